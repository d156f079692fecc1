-- one row per sync: when it read the api, on the business calendar too,
-- and the counts the api reported then

with

quick_access as (

    select * from elasticfunnels.quick_access

),

renamed as (

    select

        run_at as synced_at,
        cast(timezone('{{ business_timezone }}', run_at) as date) as synced_on,

        all_customers as api_count_all,
        customers as api_count_customers,
        abandons as api_count_abandons,
        chargebacks as api_count_chargebacks,
        refunds as api_count_refunds

    from quick_access

)

select * from renamed
