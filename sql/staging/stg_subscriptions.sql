-- one row per subscription, keyed by subscription_id

with

subscriptions as (

    select * from elasticfunnels.details__subscriptions

),

details as (

    select * from elasticfunnels.details

),

renamed as (

    select

        -- keys
        cast(subscriptions.id as bigint) as subscription_id,
        details.email_key,

        -- what and when
        subscriptions.product as product_name,
        lower(trim(subscriptions.status)) as subscription_status,
        lower(trim(subscriptions.status)) = 'active' as is_active,
        cast(subscriptions.next_charge_date as date) as next_charge_date

    from subscriptions

    inner join details
        on subscriptions._dlt_parent_id = details._dlt_id

)

select * from renamed
