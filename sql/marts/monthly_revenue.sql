-- one row per month from the first order to the last: orders, revenue and
-- how many buyers were new or came back; empty months show zeros

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

live_customers as (

    -- as_of_date is the date of the latest order, a deleted customer's one
    -- included, and the same on every row
    select email_key, cohort_month, as_of_date
    from customer_ltv
    where not is_deleted

),

live_orders as (

    select

        orders.email_key,
        orders.order_month,
        orders.order_total,
        orders.refunded_total,
        orders.charged_back_total,
        orders.net_total

    from orders

    inner join live_customers
        on orders.email_key = live_customers.email_key

    where orders.is_counted

),

data_end as (

    -- the first day that may not be over: the day after the latest order,
    -- or the day of the latest sync if that is earlier (a sync early on a
    -- month's last day sees orders of that day, not all of them)
    select least(
        max(as_of_date) + 1,
        coalesce((select max(synced_on) from syncs), max(as_of_date) + 1)
    ) as open_from
    from live_customers

),

month_spine as (

    -- from the first live customer's first order to where the data ends
    select cast(unnest(generate_series(
        (select min(cohort_month) from live_customers),
        (select date_trunc('month', max(as_of_date)) from live_customers),
        interval 1 month
    )) as date) as revenue_month

),

monthly as (

    select

        order_month as revenue_month,

        count(*) as count_orders,
        sum(order_total) as gross_revenue,
        sum(refunded_total) as refunds,
        sum(charged_back_total) as chargebacks,
        sum(net_total) as net_revenue,
        count(distinct email_key) as count_customers

    from live_orders

    group by order_month

),

newcomers as (

    -- a customer is new in the month of their first order, and every
    -- other buyer of a month is returning
    select cohort_month as revenue_month, count(*) as count_new_customers
    from live_customers
    where cohort_month is not null
    group by cohort_month

),

final as (

    select

        month_spine.revenue_month,

        -- false for a month not over when the data was read: its figures
        -- are still growing
        cast(month_spine.revenue_month + interval 1 month as date)
            <= (select open_from from data_end)
            as is_complete_month,

        coalesce(monthly.count_orders, 0) as count_orders,

        cast(coalesce(monthly.gross_revenue, 0) as decimal(18, 2))
            as gross_revenue,

        cast(coalesce(monthly.refunds, 0) as decimal(18, 2)) as refunds,

        cast(coalesce(monthly.chargebacks, 0) as decimal(18, 2))
            as chargebacks,

        cast(coalesce(monthly.net_revenue, 0) as decimal(18, 2))
            as net_revenue,

        coalesce(monthly.count_customers, 0) as count_customers,
        coalesce(newcomers.count_new_customers, 0) as count_new_customers,

        coalesce(monthly.count_customers, 0)
            - coalesce(newcomers.count_new_customers, 0)
            as count_returning_customers

    from month_spine

    left join monthly
        on month_spine.revenue_month = monthly.revenue_month

    left join newcomers
        on month_spine.revenue_month = newcomers.revenue_month

)

select * from final
order by revenue_month
