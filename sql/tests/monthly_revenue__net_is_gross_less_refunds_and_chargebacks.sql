-- model: monthly_revenue
-- rule: net revenue is gross revenue less refunds and chargebacks

select
    revenue_month,
    gross_revenue,
    refunds,
    chargebacks,
    net_revenue
from marts.monthly_revenue
where net_revenue <> gross_revenue - refunds - chargebacks
