-- model: stg_orders
-- rule: every counted order has a time and a total that is not negative

select order_id, email_key, order_status, ordered_at, order_total
from staging.stg_orders
where
    is_counted
    and (ordered_at is null or order_total is null or order_total < 0)
