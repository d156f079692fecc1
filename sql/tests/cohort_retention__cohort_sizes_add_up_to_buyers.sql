-- model: cohort_retention
-- rule: cohort sizes add up to the live customers with a counted order

with

cohorts as (

    select distinct cohort_month, cohort_size
    from marts.cohort_retention

),

buyers as (

    select count(distinct orders.email_key) as count_buyers
    from staging.stg_orders as orders
    inner join staging.stg_customers as customers
        on orders.email_key = customers.email_key
    where orders.is_counted and not customers.is_deleted

),

compared as (

    select
        (select coalesce(sum(cohort_size), 0) from cohorts)
            as total_cohort_size,
        buyers.count_buyers
    from buyers

)

select * from compared
where total_cohort_size <> count_buyers
