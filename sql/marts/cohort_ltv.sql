-- one row per cohort: cumulative net revenue per member after 0, 1, 3, 6
-- and 12 months; null where the cohort is too young to tell, which includes
-- a month not over when the data was read

with

cohort_retention as (

    select * from marts.cohort_retention

),

milestones as (

    select

        cohort_month,
        max(cohort_size) as cohort_size,
        max(period_number) as latest_period_number,

        max(case when period_number = 0 and is_complete_month
            then cumulative_net_revenue_per_customer end) as ltv_month_0,

        max(case when period_number = 1 and is_complete_month
            then cumulative_net_revenue_per_customer end) as ltv_month_1,

        max(case when period_number = 3 and is_complete_month
            then cumulative_net_revenue_per_customer end) as ltv_month_3,

        max(case when period_number = 6 and is_complete_month
            then cumulative_net_revenue_per_customer end) as ltv_month_6,

        max(case when period_number = 12 and is_complete_month
            then cumulative_net_revenue_per_customer end) as ltv_month_12

    from cohort_retention

    group by cohort_month

)

select * from milestones
order by cohort_month
