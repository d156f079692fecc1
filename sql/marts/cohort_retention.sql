-- one row per cohort and period: how many of a cohort came back to buy in
-- each month since their first, and what they were worth

with

customer_ltv as (

    select * from marts.customer_ltv

),

orders as (

    select * from staging.stg_orders

),

syncs as (

    select * from staging.stg_syncs

),

cohort_members as (

    -- as_of_date is the date of the latest order, a deleted customer's one
    -- included, and the same on every row
    select email_key, cohort_month, as_of_date
    from customer_ltv
    where not is_lead and not is_deleted

),

cohorts as (

    select cohort_month, count(*) as cohort_size
    from cohort_members
    group by cohort_month

),

data_end as (

    select
        cast(date_trunc('month', max(as_of_date)) as date) as last_month,
        max(as_of_date) as as_of_date,
        -- the first day that may not be over: the day after the latest
        -- order, or the day of the latest sync if that is earlier (a sync
        -- early on a month's last day sees orders of that day, not all)
        least(
            max(as_of_date) + 1,
            coalesce((select max(synced_on) from syncs), max(as_of_date) + 1)
        ) as open_from
    from cohort_members

),

month_spine as (

    select cast(unnest(generate_series(
        (select min(cohort_month) from cohorts),
        (select last_month from data_end),
        interval 1 month
    )) as date) as activity_month

),

cohort_grid as (

    select

        cohorts.cohort_month,
        cohorts.cohort_size,
        month_spine.activity_month,

        date_diff(
            'month', cohorts.cohort_month, month_spine.activity_month
        ) as period_number

    from cohorts

    inner join month_spine
        on month_spine.activity_month >= cohorts.cohort_month

),

member_orders as (

    select

        cohort_members.cohort_month,
        orders.email_key,
        orders.order_month,
        orders.order_total,
        orders.net_total

    from orders

    inner join cohort_members
        on orders.email_key = cohort_members.email_key

    where orders.is_counted

),

period_activity as (

    select

        cohort_month,
        order_month as activity_month,
        count(distinct email_key) as count_active_customers,
        count(*) as count_orders,
        sum(order_total) as gross_revenue,
        sum(net_total) as net_revenue

    from member_orders

    group by cohort_month, order_month

),

filled as (

    select

        cohort_grid.cohort_month,
        cohort_grid.period_number,
        cohort_grid.activity_month,
        cohort_grid.cohort_size,

        coalesce(period_activity.count_active_customers, 0)
            as count_active_customers,

        coalesce(period_activity.count_orders, 0) as count_orders,

        cast(coalesce(period_activity.gross_revenue, 0) as decimal(18, 2))
            as gross_revenue,

        cast(coalesce(period_activity.net_revenue, 0) as decimal(18, 2))
            as net_revenue

    from cohort_grid

    left join period_activity
        on cohort_grid.cohort_month = period_activity.cohort_month
        and cohort_grid.activity_month = period_activity.activity_month

),

final as (

    select

        cohort_month,
        period_number,
        activity_month,
        cohort_size,

        -- false for a month not over when the data was read: its figures
        -- are still growing
        cast(activity_month + interval 1 month as date)
            <= (select open_from from data_end)
            as is_complete_month,

        count_active_customers,
        cast(count_active_customers as double) / cohort_size
            as retention_rate,
        count_orders,
        gross_revenue,
        net_revenue,

        cast(
            sum(net_revenue) over (
                partition by cohort_month
                order by period_number
            ) / cohort_size
            as decimal(18, 2)
        ) as cumulative_net_revenue_per_customer

    from filled

)

select * from final
order by cohort_month, period_number
