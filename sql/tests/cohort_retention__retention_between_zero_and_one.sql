-- model: cohort_retention
-- rule: retention is never below 0 or above 1, and is 1 in period 0

select cohort_month, period_number, cohort_size, count_active_customers,
    retention_rate
from marts.cohort_retention
where
    retention_rate is null
    or retention_rate < 0
    or retention_rate > 1
    or (period_number = 0 and retention_rate <> 1)
