-- model: customer_ltv
-- rule: no amount or count is negative

select *
from marts.customer_ltv
where
    gross_revenue < 0
    or refunds < 0
    or chargebacks < 0
    or net_revenue < 0
    or average_order_value < 0
    or count_orders < 0
    or days_as_customer < 0
    or days_since_last_order < 0
