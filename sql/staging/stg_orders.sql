-- one row per order or abandoned cart, keyed by order_id; dates and months
-- are read on the business time zone's calendar, never the session's

with

orders as (

    select * from elasticfunnels.details__orders

),

details as (

    select * from elasticfunnels.details

),

customers as (

    select * from elasticfunnels.customers

),

renamed as (

    select

        -- keys
        cast(orders.id as varchar) as order_id,
        details.email_key,

        -- what and when
        lower(trim(orders.status)) as order_status,
        cast(orders.date as timestamptz) as ordered_at,
        cast(orders.total as decimal(14, 2)) as order_total,
        customers.deleted_at is not null as is_customer_deleted

    from orders

    inner join details
        on orders._dlt_parent_id = details._dlt_id

    left join customers
        on details.email_key = customers.email_key

),

current_orders as (

    -- an order the api now lists under a live customer has moved there (an
    -- email changed): the copy a deleted customer kept is left out
    select * from renamed
    where
        not renamed.is_customer_deleted
        or not exists (
            select 1
            from renamed as live
            where
                live.order_id = renamed.order_id
                and not live.is_customer_deleted
        )

),

localized as (

    select

        *,
        timezone('{{ business_timezone }}', ordered_at) as ordered_local_at

    from current_orders

),

flagged as (

    select

        -- keys
        order_id,
        email_key,

        -- when, on the business calendar
        ordered_at,
        cast(ordered_local_at as date) as order_date,
        cast(date_trunc('month', ordered_local_at) as date) as order_month,

        -- status
        order_status,
        order_status = 'abandoned' as is_abandoned,
        order_status <> 'abandoned' as is_counted,
        order_status = 'refunded' as is_refunded,
        order_status = 'chargeback' as is_charged_back,

        -- amounts: a refund or chargeback lands on the original order
        order_total,

        case when order_status = 'refunded' then order_total else 0 end
            as refunded_total,

        case when order_status = 'chargeback' then order_total else 0 end
            as charged_back_total,

        -- a status the api adds later counts as approved until told
        -- otherwise (and fails the accepted-statuses test meanwhile)
        case
            when order_status in ('refunded', 'chargeback', 'abandoned')
                then 0
            else order_total
        end as net_total

    from localized

)

select * from flagged
