-- one row per month from the first order to the last: orders, revenue and
-- how many buyers were new or came back; empty months show zeros

with

customer_ltv as (

    select * from marts.customer_ltv

),

orders as (

    select * from staging.stg_orders

),

data_end as (

    -- deleted customers' orders still happened: they mark where data ends
    select max(order_month) as last_month
    from orders
    where is_counted

),

live_orders as (

    select

        orders.email_key,
        orders.order_month,
        orders.order_total,
        orders.refunded_total,
        orders.charged_back_total,
        orders.net_total,
        customer_ltv.cohort_month

    from orders

    inner join customer_ltv
        on orders.email_key = customer_ltv.email_key

    where orders.is_counted and not customer_ltv.is_deleted

),

month_spine as (

    select cast(unnest(generate_series(
        (select min(order_month) from live_orders),
        (select last_month from data_end),
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

        count(distinct email_key) as count_customers,

        count(distinct case when cohort_month = order_month
            then email_key end) as count_new_customers,

        count(distinct case when cohort_month < order_month
            then email_key end) as count_returning_customers

    from live_orders

    group by order_month

),

final as (

    select

        month_spine.revenue_month,

        coalesce(monthly.count_orders, 0) as count_orders,

        cast(coalesce(monthly.gross_revenue, 0) as decimal(18, 2))
            as gross_revenue,

        cast(coalesce(monthly.refunds, 0) as decimal(18, 2)) as refunds,

        cast(coalesce(monthly.chargebacks, 0) as decimal(18, 2))
            as chargebacks,

        cast(coalesce(monthly.net_revenue, 0) as decimal(18, 2))
            as net_revenue,

        coalesce(monthly.count_customers, 0) as count_customers,
        coalesce(monthly.count_new_customers, 0) as count_new_customers,

        coalesce(monthly.count_returning_customers, 0)
            as count_returning_customers

    from month_spine

    left join monthly
        on month_spine.revenue_month = monthly.revenue_month

)

select * from final
