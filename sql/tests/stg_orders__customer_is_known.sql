-- model: stg_orders
-- rule: every order belongs to a customer on the customer list

select orders.order_id, orders.email_key
from staging.stg_orders as orders
left join staging.stg_customers as customers
    on orders.email_key = customers.email_key
where customers.email_key is null
