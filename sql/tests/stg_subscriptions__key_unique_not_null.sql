-- model: stg_subscriptions
-- rule: subscription_id is unique and not null

select subscription_id, count(*) as count_rows
from staging.stg_subscriptions
group by subscription_id
having subscription_id is null or count(*) > 1
