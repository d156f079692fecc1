-- model: cohort_retention
-- rule: cohort_month and period_number are unique together and not null

select cohort_month, period_number, count(*) as count_rows
from marts.cohort_retention
group by cohort_month, period_number
having
    cohort_month is null
    or period_number is null
    or count(*) > 1
