-- model: stg_orders
-- rule: email_key is the email trimmed and lower-cased, as the sync keys it

select order_id, email_key
from staging.stg_orders
where email_key <> lower(trim(email_key))
