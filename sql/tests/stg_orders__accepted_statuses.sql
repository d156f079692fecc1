-- model: stg_orders
-- rule: status is approved, refunded, chargeback or abandoned

select order_id, email_key, order_status
from staging.stg_orders
where
    order_status is null
    or order_status not in ('approved', 'refunded', 'chargeback', 'abandoned')
