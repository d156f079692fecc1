-- one row per live buyer: recency, frequency and monetary quintiles as of
-- the latest order in the warehouse, and the segment they put them in

with

customer_ltv as (

    select * from marts.customer_ltv

),

buyers as (

    select

        email_key,
        as_of_date,
        last_order_date,
        days_since_last_order as recency_days,
        count_orders,
        net_revenue

    from customer_ltv

    where not is_lead and not is_deleted

),

scored as (

    -- 5 is best. A score is the quintile a buyer's place falls in, their
    -- place being how many buyers did worse (rank() - 1): buyers with equal
    -- figures share a place, so they share a score, and the quintiles are
    -- as equal in size as the ties allow
    select

        *,

        1 + (5 * (rank() over (order by recency_days desc) - 1))
            // count(*) over () as recency_score,

        1 + (5 * (rank() over (order by count_orders) - 1))
            // count(*) over () as frequency_score,

        1 + (5 * (rank() over (order by net_revenue) - 1))
            // count(*) over () as monetary_score

    from buyers

),

combined as (

    select

        *,

        -- the mean of f and m, halves rounded up
        cast((frequency_score + monetary_score + 1) // 2 as integer)
            as fm_score

    from scored

),

segmented as (

    select

        *,

        concat(recency_score, frequency_score, monetary_score) as rfm_cell,

        case
            when recency_score = 5 and fm_score >= 4
                then 'champions'
            when recency_score in (3, 4) and fm_score >= 4
                then 'loyal'
            when recency_score in (4, 5) and fm_score in (2, 3)
                then 'potential_loyalists'
            when recency_score = 5 and fm_score = 1
                then 'new'
            when recency_score = 4 and fm_score = 1
                then 'promising'
            when recency_score = 3 and fm_score = 3
                then 'need_attention'
            when recency_score = 3 and fm_score <= 2
                then 'about_to_sleep'
            when recency_score <= 2 and fm_score = 5
                then 'cant_lose'
            when recency_score <= 2 and fm_score in (3, 4)
                then 'at_risk'
            when recency_score <= 2 and fm_score <= 2
                then 'hibernating'
        end as segment

    from combined

),

final as (

    select

        -- who, and as of when
        email_key,
        as_of_date,

        -- the figures
        last_order_date,
        recency_days,
        count_orders,
        net_revenue,

        -- the scores and what they make
        recency_score,
        frequency_score,
        monetary_score,
        fm_score,
        rfm_cell,
        segment

    from segmented

)

select * from final
