-- every live customer whose net revenue, as counted here from the orders,
-- differs from the lifetime value the api reports for them

with

customer_ltv as (

    select * from marts.customer_ltv

),

customers as (

    select * from staging.stg_customers

),

compared as (

    select

        customer_ltv.email_key,

        -- the two lifetime values
        customer_ltv.net_revenue,
        cast(coalesce(customers.api_lifetime_value, 0) as decimal(18, 2))
            as api_lifetime_value,

        cast(
            customer_ltv.net_revenue
            - coalesce(customers.api_lifetime_value, 0)
            as decimal(18, 2)
        ) as difference,

        -- their parts, to see where they part ways
        customer_ltv.count_orders,
        customers.api_count_orders,
        customer_ltv.gross_revenue,
        customers.api_total_revenue,
        customer_ltv.refunds,
        customers.api_total_refunds,
        customer_ltv.chargebacks,
        customers.api_total_chargebacks

    from customer_ltv

    inner join customers
        on customer_ltv.email_key = customers.email_key

    where not customer_ltv.is_deleted

),

final as (

    select * from compared
    where difference <> 0

)

select * from final
