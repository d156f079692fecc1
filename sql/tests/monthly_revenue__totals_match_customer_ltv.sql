-- model: monthly_revenue
-- rule: the months add up to the live customers' orders and net revenue

with

by_month as (

    select
        sum(count_orders) as count_orders,
        sum(net_revenue) as net_revenue
    from marts.monthly_revenue

),

by_customer as (

    select
        sum(count_orders) as count_orders,
        sum(net_revenue) as net_revenue
    from marts.customer_ltv
    where not is_deleted

),

compared as (

    select
        coalesce(by_month.count_orders, 0) as monthly_count_orders,
        coalesce(by_customer.count_orders, 0) as customer_count_orders,
        coalesce(by_month.net_revenue, 0) as monthly_net_revenue,
        coalesce(by_customer.net_revenue, 0) as customer_net_revenue
    from by_month
    cross join by_customer

)

select * from compared
where
    monthly_count_orders <> customer_count_orders
    or monthly_net_revenue <> customer_net_revenue
