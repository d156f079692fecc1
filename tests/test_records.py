"""Values the API may serve that no check of the contract expects."""

from __future__ import annotations

import pytest

from pipelines.elasticfunnels.records import (
    BadRecord,
    customer_record,
    to_int,
    to_timestamp,
)


@pytest.mark.parametrize("value", ["²", "--5", "5-", "1_000", "٥", " "])
def test_what_int_would_refuse_is_a_bad_record(value):
    with pytest.raises(BadRecord, match="`total_orders` is not a whole number"):
        to_int("total_orders", value)


@pytest.mark.parametrize(("value", "number"), [(" 12 ", 12), ("-3", -3), (7.0, 7)])
def test_whole_numbers_in_any_form_are_read(value, number):
    assert to_int("total_orders", value) == number


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+02:00", "9999-12-31T23:59:59-05:00"]
)
def test_dates_that_leave_the_calendar_in_utc_are_bad_records(value):
    with pytest.raises(BadRecord, match="outside the years 1 to 9999 in UTC"):
        to_timestamp("orders.date", value)


def test_the_reason_leaves_out_the_value_and_the_message_keeps_it():
    row = {"customer_email": "jane@example.com", "customer_name": ["Jane Q Doe"]}
    with pytest.raises(BadRecord) as bad:
        customer_record(row)
    assert bad.value.reason == "`customer_name` is not text"
    assert str(bad.value) == "`customer_name` is not text: '[\"Jane Q Doe\"]'"
