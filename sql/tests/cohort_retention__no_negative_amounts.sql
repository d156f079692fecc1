-- model: cohort_retention
-- rule: no amount or count is negative

select *
from marts.cohort_retention
where
    gross_revenue < 0
    or net_revenue < 0
    or cumulative_net_revenue_per_customer < 0
    or count_orders < 0
    or count_active_customers < 0
