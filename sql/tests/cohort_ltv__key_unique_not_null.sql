-- model: cohort_ltv
-- rule: cohort_month is unique and not null

select cohort_month, count(*) as count_rows
from marts.cohort_ltv
group by cohort_month
having cohort_month is null or count(*) > 1
