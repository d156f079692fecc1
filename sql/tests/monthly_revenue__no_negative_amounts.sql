-- model: monthly_revenue
-- rule: no amount or count is negative

select *
from marts.monthly_revenue
where
    gross_revenue < 0
    or refunds < 0
    or chargebacks < 0
    or net_revenue < 0
    or count_orders < 0
    or count_new_customers < 0
    or count_returning_customers < 0
