-- model: customer_ltv
-- rule: email_key is unique and not null

select email_key, count(*) as count_rows
from marts.customer_ltv
group by email_key
having email_key is null or count(*) > 1
