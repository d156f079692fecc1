-- model: stg_customers
-- rule: email_key is the email trimmed and lower-cased, as the sync keys it

select email_key, customer_email
from staging.stg_customers
where email_key <> lower(trim(email_key))
