-- one row per product line of an order, in the order the api listed them

with

products as (

    select * from elasticfunnels.details__orders__products

),

orders as (

    select * from elasticfunnels.details__orders

),

details as (

    select * from elasticfunnels.details

),

renamed as (

    select

        -- keys
        products._dlt_id as order_product_id,
        cast(orders.id as varchar) as order_id,
        details.email_key,

        -- the product
        cast(products._dlt_list_idx as bigint) as product_position,
        products.value as product_name

    from products

    inner join orders
        on products._dlt_parent_id = orders._dlt_id

    inner join details
        on orders._dlt_parent_id = details._dlt_id

)

select * from renamed
