-- model: monthly_revenue
-- rule: revenue_month is unique and not null

select revenue_month, count(*) as count_rows
from marts.monthly_revenue
group by revenue_month
having revenue_month is null or count(*) > 1
