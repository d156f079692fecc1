-- one row per customer on the api's customer list, keyed by the normalized
-- email; customers the reconcile found gone keep their row, flagged

with

source as (

    select * from elasticfunnels.customers

),

renamed as (

    select

        -- keys
        email_key,
        customer_email,

        -- who and where
        customer_name,
        customer_first_name as first_name,
        customer_last_name as last_name,
        customer_phone as phone,
        customer_country as country,
        customer_state as state,
        customer_city as city,

        -- the api's own figures, kept to reconcile against
        cast(first_order_date as timestamptz) as api_first_ordered_at,
        cast(last_order_date as timestamptz) as api_last_ordered_at,
        cast(total_orders as bigint) as api_count_orders,
        cast(total_revenue as decimal(14, 2)) as api_total_revenue,
        cast(total_refunds as decimal(14, 2)) as api_total_refunds,
        cast(total_chargebacks as decimal(14, 2)) as api_total_chargebacks,
        cast(lifetime_value as decimal(14, 2)) as api_lifetime_value,
        cast(order_frequency as bigint) as api_order_frequency_days,
        cast(products_purchased as bigint) as api_count_products_purchased,

        -- abandoned carts
        coalesce(is_abandoned_customer, false) as is_abandoned_customer,
        cast(abandoned_value as decimal(14, 2)) as abandoned_cart_value,

        -- sync bookkeeping
        cast(synced_at as timestamptz) as synced_at,
        cast(deleted_at as timestamptz) as deleted_at,
        deleted_at is not null as is_deleted

    from source

)

select * from renamed
