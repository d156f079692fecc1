-- model: rfm_segments
-- rule: every score is 1 to 5 and every buyer has a segment

select *
from marts.rfm_segments
where
    recency_score not between 1 and 5
    or frequency_score not between 1 and 5
    or monetary_score not between 1 and 5
    or fm_score not between 1 and 5
    or segment is null
