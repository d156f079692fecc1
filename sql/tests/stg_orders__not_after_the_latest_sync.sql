-- model: stg_orders
-- rule: no order is dated after the latest sync read it (a day allowed for clocks)

select order_id, ordered_at
from staging.stg_orders
where ordered_at > (select max(synced_at) from staging.stg_syncs) + interval 1 day
