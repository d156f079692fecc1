-- model: stg_orders
-- rule: order_id is unique and not null

select order_id, count(*) as count_rows
from staging.stg_orders
group by order_id
having order_id is null or count(*) > 1
