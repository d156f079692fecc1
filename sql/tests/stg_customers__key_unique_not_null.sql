-- model: stg_customers
-- rule: email_key is unique and not null

select email_key, count(*) as count_rows
from staging.stg_customers
group by email_key
having email_key is null or count(*) > 1
