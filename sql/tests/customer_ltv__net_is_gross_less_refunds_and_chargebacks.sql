-- model: customer_ltv
-- rule: net revenue is gross revenue less refunds and chargebacks

select
    email_key,
    gross_revenue,
    refunds,
    chargebacks,
    net_revenue
from marts.customer_ltv
where net_revenue <> gross_revenue - refunds - chargebacks
