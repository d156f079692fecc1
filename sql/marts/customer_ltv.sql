-- one row per customer, leads and deleted customers included (flagged):
-- what each has bought, refunded and been charged back, net of both

with

customers as (

    select * from staging.stg_customers

),

orders as (

    select * from staging.stg_orders

),

counted_orders as (

    select * from orders
    where is_counted

),

order_totals as (

    select

        email_key,

        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        min(order_month) as cohort_month,

        count(*) as count_orders,
        sum(order_total) as gross_revenue,
        sum(refunded_total) as refunds,
        sum(charged_back_total) as chargebacks,
        sum(net_total) as net_revenue

    from counted_orders

    group by email_key

),

data_end as (

    -- the warehouse's "today" is its latest order, so a figure never moves
    -- between two runs on the same data
    select max(last_order_date) as as_of_date
    from order_totals

),

final as (

    select

        -- who
        customers.email_key,
        customers.country,
        customers.is_deleted,

        -- when
        order_totals.first_ordered_at,
        order_totals.last_ordered_at,
        order_totals.first_order_date,
        order_totals.last_order_date,
        order_totals.cohort_month,
        data_end.as_of_date,

        date_diff(
            'day', order_totals.first_order_date, data_end.as_of_date
        ) as days_as_customer,

        date_diff(
            'day', order_totals.first_order_date, order_totals.last_order_date
        ) as days_first_to_last_order,

        date_diff(
            'day', order_totals.last_order_date, data_end.as_of_date
        ) as days_since_last_order,

        -- how much
        coalesce(order_totals.count_orders, 0) as count_orders,

        cast(coalesce(order_totals.gross_revenue, 0) as decimal(18, 2))
            as gross_revenue,

        cast(coalesce(order_totals.refunds, 0) as decimal(18, 2))
            as refunds,

        cast(coalesce(order_totals.chargebacks, 0) as decimal(18, 2))
            as chargebacks,

        cast(coalesce(order_totals.net_revenue, 0) as decimal(18, 2))
            as net_revenue,

        cast(
            round(order_totals.gross_revenue / order_totals.count_orders, 2)
            as decimal(18, 2)
        ) as average_order_value,

        -- what kind
        coalesce(order_totals.count_orders, 0) >= 2 as is_repeat_buyer,
        coalesce(order_totals.count_orders, 0) = 0 as is_lead

    from customers

    left join order_totals
        on customers.email_key = order_totals.email_key

    cross join data_end

)

select * from final
