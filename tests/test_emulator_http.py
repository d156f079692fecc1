"""The emulator's HTTP contract, driven through a real loopback connection.

One uvicorn server per module (see `conftest.py`) serves the first 2,000 CDNOW
customers; each test puts the emulator back as it was (`pristine`). Expected
values come from the store itself or from the data set's known shapes, so a
test fails when the HTTP layer adds, drops or reorders anything.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from pipelines.emulator import ALLOWED_COLUMNS, DEFAULT_BRAND, DEFAULT_KEY, Emulator

CUSTOMERS = f"/brands/{DEFAULT_BRAND}/customers"
HUGE = 10 * 1024 * 1024


@pytest.fixture(autouse=True)
def _pristine(pristine: Emulator) -> Emulator:
    return pristine


@pytest.fixture(scope="module")
def store(small_emulator: Emulator):
    return small_emulator.store


def get_list(api: httpx.Client, **params) -> dict:
    response = api.get(CUSTOMERS, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def details_path(email_address: str, safe: str = "") -> str:
    return f"{CUSTOMERS}/{urllib.parse.quote(email_address, safe=safe)}/details"


def admin(served_url: str, route: str, body: dict | None = None) -> httpx.Response:
    url = served_url.removesuffix("/api") + "/_emulator/" + route
    if body is None:
        return httpx.get(url)
    return httpx.post(url, json=body)


# -- list: pagination -----------------------------------------------------------


def test_list_first_page_is_a_laravel_paginator(api, served_url, store):
    response = api.get(CUSTOMERS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert email.utils.parsedate_to_datetime(response.headers["date"])
    body = response.json()

    rows, total = store.list_customers(offset=0, limit=25)
    last_page = math.ceil(total / 25)
    path = served_url + CUSTOMERS
    assert list(body) == [
        "current_page",
        "data",
        "first_page_url",
        "from",
        "last_page",
        "last_page_url",
        "links",
        "next_page_url",
        "path",
        "per_page",
        "prev_page_url",
        "to",
        "total",
    ]
    assert body["data"] == rows
    assert (body["current_page"], body["per_page"], body["total"]) == (1, 25, total)
    assert (body["from"], body["to"], body["last_page"]) == (1, 25, last_page)
    assert body["path"] == path
    assert body["first_page_url"] == f"{path}?page=1"
    assert body["last_page_url"] == f"{path}?page={last_page}"
    assert body["next_page_url"] == f"{path}?page=2"
    assert body["prev_page_url"] is None
    assert set(body["data"][0]) == set(ALLOWED_COLUMNS)


def test_list_links_follow_laravels_window(api, served_url, store):
    _, total = store.list_customers(offset=0, limit=1)
    last = math.ceil(total / 25)
    assert last >= 14, "the window needs a long paginator"
    path = served_url + CUSTOMERS

    def labels(page: int) -> list[str]:
        links = get_list(api, page=page)["links"]
        assert [link["active"] for link in links].count(True) == (page <= last)
        active = [link["label"] for link in links if link["active"]]
        assert active == ([str(page)] if page <= last else [])
        for link in links:
            if link["label"].isdigit():
                assert link["url"] == f"{path}?page={link['label']}"
        return [link["label"] for link in links]

    prev, nxt = "&laquo; Previous", "Next &raquo;"
    ends = [str(last - 1), str(last)]
    assert labels(1) == [prev, *map(str, range(1, 11)), "...", *ends, nxt]
    middle = last // 2
    assert labels(middle) == [
        prev,
        "1",
        "2",
        "...",
        *map(str, range(middle - 3, middle + 4)),
        "...",
        *ends,
        nxt,
    ]
    tail = list(map(str, range(last - 9, last + 1)))
    assert labels(last) == [prev, "1", "2", "...", *tail, nxt]

    first = get_list(api, page=1)["links"]
    assert first[0] == {"url": None, "label": prev, "active": False}
    assert first[-1] == {"url": f"{path}?page=2", "label": nxt, "active": False}

    # A short paginator lists every page.
    short = get_list(api, per_page=100, type="abandon")
    pages = short["last_page"]
    assert pages < 14
    assert [link["label"] for link in short["links"]] == [
        prev,
        *map(str, range(1, pages + 1)),
        nxt,
    ]


def test_list_urls_keep_the_other_query_parameters(api, served_url):
    response = api.get(
        CUSTOMERS + "/",
        params=[
            ("per_page", "10"),
            ("sort", "total_revenue"),
            ("sort_direction", "desc"),
            ("columns[]", "customer_email"),
            ("columns[]", "total_revenue"),
            ("q", "a b"),
            ("page", "2"),
        ],
    )
    assert response.status_code == 200
    body = response.json()
    path = served_url + CUSTOMERS
    query = (
        "per_page=10&sort=total_revenue&sort_direction=desc"
        "&columns%5B0%5D=customer_email&columns%5B1%5D=total_revenue&q=a%20b"
    )
    assert body["path"] == path
    assert body["next_page_url"] in (None, f"{path}?{query}&page=3")
    assert body["prev_page_url"] == f"{path}?{query}&page=1"
    assert body["first_page_url"] == f"{path}?{query}&page=1"


def test_list_page_past_the_end_is_empty(api, served_url, store):
    _, total = store.list_customers(offset=0, limit=1)
    last = math.ceil(total / 100)
    body = get_list(api, per_page=100, page=last + 3)
    path = served_url + CUSTOMERS
    assert body["data"] == []
    assert (body["from"], body["to"], body["next_page_url"]) == (None, None, None)
    assert body["current_page"] == last + 3
    assert body["prev_page_url"] == f"{path}?per_page=100&page={last + 2}"

    tail = get_list(api, per_page=100, page=last)
    assert tail["from"] == (last - 1) * 100 + 1
    assert tail["to"] == total
    assert tail["next_page_url"] is None


def test_list_with_no_match_has_one_page(api, served_url):
    body = get_list(api, q="no-such-customer-anywhere")
    assert (body["total"], body["last_page"], body["data"]) == (0, 1, [])
    assert (body["from"], body["to"]) == (None, None)
    assert [link["label"] for link in body["links"]] == [
        "&laquo; Previous",
        "1",
        "Next &raquo;",
    ]


@pytest.mark.parametrize("per_page", [1, 100])
def test_per_page_bounds_accepted(api, per_page):
    body = get_list(api, per_page=per_page)
    assert len(body["data"]) == per_page
    assert body["per_page"] == per_page


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "The per page field must be between 1 and 100."),
        ("101", "The per page field must be between 1 and 100."),
        ("-5", "The per page field must be between 1 and 100."),
        ("ten", "The per page field must be an integer."),
        ("2.5", "The per page field must be an integer."),
    ],
)
def test_per_page_out_of_bounds_is_422(api, value, message):
    response = api.get(CUSTOMERS, params={"per_page": value})
    assert response.status_code == 422
    assert response.json() == {"message": message, "errors": {"per_page": [message]}}


# -- list: sorting, filtering, columns ------------------------------------------


def _walk(api: httpx.Client, **params) -> list[dict]:
    rows, page = [], 1
    while True:
        body = get_list(api, per_page=100, page=page, **params)
        rows += body["data"]
        if body["next_page_url"] is None:
            return rows
        page += 1


def test_every_sort_column_both_ways_with_nulls_last(api, store):
    _, total = store.list_customers(offset=0, limit=1)
    for column in store.SORTABLE_COLUMNS:
        for direction in ("asc", "desc"):
            params = {
                "sort": column,
                "sort_direction": direction,
                "columns[]": ["customer_email", column],
            }
            rows = _walk(api, **params)
            assert len(rows) == total
            expected, _ = store.list_customers(
                offset=0,
                limit=total,
                sort=column,
                sort_direction=direction,
                columns=["customer_email", column],
            )
            assert rows == expected, (column, direction)

            values = [row[column] for row in rows]
            present = [value for value in values if value is not None]
            assert values[: len(present)] == present, f"{column}: nulls not last"
            assert present == sorted(present, reverse=direction == "desc"), column
            assert len(set(map(str, present))) > 1, f"{column} sorts nothing"


def test_default_order_is_newest_order_first(api, store):
    newest, _ = store.list_customers(
        offset=0, limit=100, sort="last_order_date", sort_direction="desc"
    )
    assert get_list(api, per_page=100)["data"] == newest
    # A direction without a column changes nothing, as on the vendor's side.
    assert get_list(api, per_page=100, sort_direction="asc")["data"] == newest


@pytest.mark.parametrize("kind", ["customer", "abandon"])
def test_type_filter(api, store, kind):
    counts = store.quick_access()
    rows = _walk(api, type=kind, **{"columns[]": ["customer_email", "total_orders"]})
    assert len(rows) == counts["customers" if kind == "customer" else "abandons"]
    if kind == "customer":
        assert all(row["total_orders"] > 0 for row in rows)
    expected, _ = store.list_customers(
        offset=0, limit=10**6, type=kind, columns=["customer_email", "total_orders"]
    )
    assert rows == expected


def test_q_searches_emails_names_and_phones(api, store):
    target = store.list_customers(offset=0, limit=1, sort="total_revenue")[0][0]
    by_email = _walk(api, q=target["customer_email"])
    assert target["customer_email"] in [row["customer_email"] for row in by_email]

    surname = target["customer_last_name"]
    by_name = _walk(api, q=surname)
    assert by_name, surname
    for row in by_name:
        haystack = " ".join(
            str(row[key] or "")
            for key in ("customer_email", "customer_name", "customer_phone")
        )
        assert surname.lower() in haystack.lower()
    assert by_name == store.list_customers(offset=0, limit=10**6, q=surname)[0]


def test_columns_subset_by_brackets_or_repeats(api, store):
    wanted = ["customer_email", "total_revenue", "last_order_date"]
    expected, _ = store.list_customers(offset=0, limit=5, columns=wanted)
    for params in (
        [("per_page", "5")] + [("columns[]", name) for name in wanted],
        [("per_page", "5")] + [("columns", name) for name in wanted],
        [("per_page", "5")] + [(f"columns[{i}]", n) for i, n in enumerate(wanted)],
    ):
        body = api.get(CUSTOMERS, params=params).json()
        assert body["data"] == expected
        # The store answers in the documented column order, whatever was asked.
        canonical = ["customer_email", "last_order_date", "total_revenue"]
        assert all(list(row) == canonical for row in body["data"])


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"page": "0"}, "page", "The page field must be at least 1."),
        ({"page": "first"}, "page", "The page field must be an integer."),
        ({"sort": "password"}, "sort", "The selected sort is invalid."),
        (
            {"sort_direction": "up"},
            "sort_direction",
            "The selected sort direction is invalid.",
        ),
        ({"type": "lead"}, "type", "The selected type is invalid."),
        ({"columns[]": "password"}, "columns", "The selected columns is invalid."),
        (
            {"columns": ["customer_email", "ssn"]},
            "columns",
            "The selected columns is invalid.",
        ),
        ({"q[]": "smith"}, "q", "The q field must be a string."),
    ],
)
def test_list_validation_names_the_field(api, params, field, message):
    response = api.get(CUSTOMERS, params=params)
    assert response.status_code == 422
    assert response.json() == {"message": message, "errors": {field: [message]}}


def test_several_validation_errors_are_counted(api):
    response = api.get(CUSTOMERS, params={"per_page": "0", "sort": "nope"})
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == (
        "The per page field must be between 1 and 100. (and 1 more error)"
    )
    assert set(body["errors"]) == {"per_page", "sort"}


# -- quick access and details ---------------------------------------------------


def test_quick_access_counts(api, store):
    response = api.get(f"{CUSTOMERS}/quick-access")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["all", "customers", "abandons", "chargebacks", "refunds"]
    assert body == store.quick_access()
    assert body["all"] == 2200
    assert body["customers"] + body["abandons"] == body["all"]


def test_details_with_each_include_flag(api, store):
    address = next(
        e
        for e in store.emails()
        if (d := store.details(e))["subscriptions"] and d["stats"]["total_orders"] > 1
    )
    full = api.get(details_path(address))
    assert full.status_code == 200
    assert full.headers["content-type"] == "application/json"
    body = full.json()
    assert body == store.details(address)
    assert list(body) == ["customer", "stats", "orders", "subscriptions"]
    assert body["customer"]["email"] == address
    assert len(body["orders"]) >= body["stats"]["total_orders"] > 1
    assert body["subscriptions"]

    for orders, subscriptions in [("false", "true"), ("0", "1"), ("1", "0")]:
        params = {"include_orders": orders, "include_subscriptions": subscriptions}
        got = api.get(details_path(address), params=params).json()
        wanted_orders = orders in ("1", "true")
        wanted_subscriptions = subscriptions in ("1", "true")
        assert got["stats"] == body["stats"]
        assert got["orders"] == (body["orders"] if wanted_orders else [])
        assert got["subscriptions"] == (
            body["subscriptions"] if wanted_subscriptions else []
        )

    bad = api.get(details_path(address), params={"include_orders": "maybe"})
    assert bad.status_code == 422
    message = "The include orders field must be true or false."
    assert bad.json() == {"message": message, "errors": {"include_orders": [message]}}


def _email_with(store, predicate) -> str:
    for address in store.emails():
        if predicate(address):
            return address
    raise AssertionError("no such email in the data set")


@pytest.mark.parametrize(
    "shape",
    ["plus", "slash", "percent", "mixed_case", "non_ascii", "apostrophe"],
)
def test_details_emails_round_trip_when_quoted(api, store, shape):
    predicates = {
        "plus": lambda e: "+" in e,
        "slash": lambda e: "/" in e,
        "percent": lambda e: "%" in e,
        "mixed_case": lambda e: e != e.lower(),
        "non_ascii": lambda e: not e.isascii(),
        "apostrophe": lambda e: "'" in e,
    }
    address = _email_with(store, predicates[shape])
    response = api.get(details_path(address))
    assert response.status_code == 200, address
    assert response.json()["customer"]["email"] == address

    if shape == "mixed_case":  # emails are served exactly, not case-folded
        other = api.get(details_path(address.swapcase()))
        assert other.status_code == 404
    if shape == "percent":  # decoded once: %25 is %, never decoded again
        twice = urllib.parse.quote(urllib.parse.quote(address, safe=""), safe="")
        assert api.get(f"{CUSTOMERS}/{twice}/details").status_code == 404


def test_a_literal_plus_in_the_path_is_a_plus(api, store):
    address = _email_with(store, lambda e: "+" in e and e.isascii() and "/" not in e)
    literal = api.get(details_path(address, safe="+@"))
    assert literal.status_code == 200
    assert literal.json()["customer"]["email"] == address
    spaced = api.get(details_path(address.replace("+", " ")))
    assert spaced.status_code == 404


def test_unknown_customer_is_404(api):
    response = api.get(details_path("nobody@example.com"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "Customer not found."}


# -- auth and routing -----------------------------------------------------------

ROUTES = [
    ("GET", CUSTOMERS, None, 200),
    ("GET", f"{CUSTOMERS}/quick-access", None, 200),
    ("GET", f"{CUSTOMERS}/someone%40example.com/details", None, 404),
    ("POST", f"{CUSTOMERS}/export", {"columns": ["customer_email"]}, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "authorised"), ROUTES)
def test_auth_cases_on_every_route(
    served_url, small_emulator, method, path, body, authorised
):
    def send(headers: dict, url_path: str = path) -> httpx.Response:
        return httpx.request(
            method, served_url + url_path, headers=headers, json=body, timeout=10
        )

    missing = send({"Accept": "application/json"})
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    assert send({}).status_code == 404  # httpx's default Accept is */*

    browser = send(
        {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Host": "ef.test"}
    )
    assert browser.status_code == 302
    assert browser.headers["location"] == "http://ef.test/login"
    assert browser.headers["content-type"].startswith("text/html")
    assert "Redirecting to" in browser.text

    wrong = send({"EF-Access-Key": "not-the-key"})
    assert wrong.status_code == 401
    assert wrong.json() == {"message": "Invalid API key"}

    other_brand = send(
        {"EF-Access-Key": DEFAULT_KEY}, path.replace(DEFAULT_BRAND, "7", 1)
    )
    assert other_brand.status_code == 401
    assert other_brand.json() == {"message": "Invalid API key or brand access denied"}

    small_emulator.module_access = False
    forbidden = send({"ef-access-key": DEFAULT_KEY})
    assert forbidden.status_code == 403
    assert "customers module" in forbidden.json()["message"]
    small_emulator.module_access = True

    assert send({"EF-Access-Key": DEFAULT_KEY}).status_code == authorised
    small_emulator.key = "rotated-key"  # the old key stops working at once
    assert send({"EF-Access-Key": DEFAULT_KEY}).status_code == 401
    assert send({"EF-Access-Key": "rotated-key"}).status_code == authorised


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/brands/1042/orders", 404),
        ("GET", "/brands/1042/customers/a%40b.com", 404),
        ("GET", "/brands/1042/customers/a%40b.com/orders", 404),
        ("GET", "/nothing", 404),
        ("GET", "/../robots.txt", 404),
        ("POST", "/brands/1042/customers", 405),
        ("GET", "/brands/1042/customers/export", 405),
        ("DELETE", "/brands/1042/customers/quick-access", 405),
    ],
)
def test_unknown_routes_and_methods(api, method, path, status):
    response = api.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    if status == 404:
        assert response.json() == {"message": "Not Found"}
    else:
        assert "method is not supported" in response.json()["message"]


# -- export ---------------------------------------------------------------------


def test_export_is_validated_and_recorded(api, served_url, small_emulator):
    good = {
        "columns": ["customer_email", "customer_name", "total_revenue"],
        "filters": {"type": "customer", "sort": "total_revenue"},
        "selected_emails": ["a@example.com"],
    }
    response = api.post(f"{CUSTOMERS}/export", json=good)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Export started. You will receive an email when it is ready.",
    }
    as_list = {"filters": [{"type": "abandon"}, {"q": "smith"}]}
    assert api.post(f"{CUSTOMERS}/export", json=as_list).status_code == 200
    assert api.post(f"{CUSTOMERS}/export", json={}).status_code == 200

    refused = [
        ({"columns": ["customer_email", "password"]}, "columns"),
        ({"columns": "customer_email"}, "columns"),
        ({"filters": {"type": "lead"}}, "filters.type"),
        ({"filters": {"sort": "password"}}, "filters.sort"),
        ({"filters": {"sort_direction": "up"}}, "filters.sort_direction"),
        ({"filters": {"q": 5}}, "filters.q"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
        ({"filters": "type=customer"}, "filters"),
        ({"selected_emails": "a@example.com"}, "selected_emails"),
        ({"selected_emails": [1, 2]}, "selected_emails"),
    ]
    for body, field in refused:
        response = api.post(f"{CUSTOMERS}/export", json=body)
        assert response.status_code == 422, body
        assert list(response.json()["errors"]) == [field]
    not_json = api.post(f"{CUSTOMERS}/export", content=b"columns=x")
    assert not_json.status_code == 422
    assert list(not_json.json()["errors"]) == ["body"]

    assert small_emulator.exports == [good, as_list, {}]
    stats = admin(served_url, "stats").json()
    assert stats["exports"] == [good, as_list, {}]
    assert stats["counts"]["export"] == 3 + len(refused) + 1
    assert stats["counts"]["200"] == 3


# -- admin routes ---------------------------------------------------------------


def test_clock_over_the_admin_route_hides_and_reveals_events(api, served_url):
    start = admin(served_url, "clock").json()["as_of"]
    assert start == "1998-07-01T00:00:00Z"
    everyone = api.get(f"{CUSTOMERS}/quick-access").json()

    early = admin(served_url, "clock", {"as_of": "1997-02-01T00:00:00Z"})
    assert early.json() == {"as_of": "1997-02-01T00:00:00Z"}
    then = api.get(f"{CUSTOMERS}/quick-access").json()
    assert 0 < then["all"] < everyone["all"]
    assert get_list(api)["total"] == then["all"]

    later = admin(served_url, "clock", {"advance_seconds": 30 * 86400})
    assert later.json() == {"as_of": "1997-03-03T00:00:00Z"}
    assert then["all"] < api.get(f"{CUSTOMERS}/quick-access").json()["all"]

    for bad in ({"as_of": "yesterday"}, {"advance_seconds": "ten"}, {}):
        assert admin(served_url, "clock", bad).status_code == 422


def test_faults_over_the_admin_route(api, served_url, small_emulator):
    assert admin(served_url, "faults").json()["rate_429"] == 0.0
    changed = admin(served_url, "faults", {"rate_5xx": 1, "statuses_5xx": [503]})
    assert changed.status_code == 200
    assert changed.json()["rate_5xx"] == 1.0
    assert small_emulator.faults.statuses_5xx == (503,)
    assert api.get(CUSTOMERS).status_code == 503
    # Admin routes never suffer faults.
    assert admin(served_url, "stats").status_code == 200

    refused = admin(served_url, "faults", {"rate_429": 2, "bad_data": ["typo"]})
    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"rate_429", "bad_data"}
    assert small_emulator.faults.rate_429 == 0.0
    assert admin(served_url, "faults", {"nope": 1}).status_code == 422
    # Reachable under the base URL too, for clients that only know that.
    assert httpx.get(served_url + "/_emulator/faults").json()["rate_5xx"] == 1.0


def test_stats_count_routes_and_statuses_and_reset(api, served_url, store):
    api.get(CUSTOMERS)
    api.get(CUSTOMERS, params={"per_page": 0})
    api.get(f"{CUSTOMERS}/quick-access")
    api.get(details_path(store.emails()[0]))
    api.get(details_path("nobody@example.com"))
    counts = admin(served_url, "stats").json()["counts"]
    assert counts == {
        "list": 2,
        "quick_access": 1,
        "details": 2,
        "200": 3,
        "404": 1,
        "422": 1,
    }
    reset = httpx.post(served_url.removesuffix("/api") + "/_emulator/stats/reset")
    assert reset.json() == {"counts": {}, "exports": []}


# -- faults ---------------------------------------------------------------------


def test_latency_and_jitter(api, small_emulator):
    small_emulator.faults.latency_ms = 150
    small_emulator.faults.jitter_ms = 50
    started = time.perf_counter()
    assert api.get(f"{CUSTOMERS}/quick-access").status_code == 200
    assert 0.15 <= time.perf_counter() - started < 1.0


def test_latency_includes_the_emulators_own_work(api, small_emulator, monkeypatch):
    # A configured latency is the time to answer, as a client sees it: work
    # that takes 150 ms under a 250 ms latency answers at 250, not 400.
    small_emulator.faults.latency_ms = 250
    handle = small_emulator.handle

    def slow(request):
        time.sleep(0.15)
        return handle(request)

    monkeypatch.setattr(small_emulator, "handle", slow)
    started = time.perf_counter()
    assert api.get(f"{CUSTOMERS}/quick-access").status_code == 200
    assert 0.25 <= time.perf_counter() - started < 0.38


@pytest.mark.parametrize("spec", ["2", "0", "date:5", "none"])
def test_429_with_each_retry_after_form(api, small_emulator, spec):
    small_emulator.faults.rate_429 = 1.0
    small_emulator.faults.retry_after = spec
    response = api.get(CUSTOMERS)
    assert response.status_code == 429
    assert response.json() == {"message": "Too Many Attempts."}
    header = response.headers.get("retry-after")
    if spec == "none":
        assert header is None
    elif spec.startswith("date:"):
        moment = email.utils.parsedate_to_datetime(header)
        ahead = (moment - datetime.now(UTC)).total_seconds()
        assert 3.5 <= ahead <= 6.5
    else:
        assert header == spec
    assert small_emulator.counts[429] == 1


def test_rps_budget(api, small_emulator):
    small_emulator.faults.rps_budget = 5
    statuses = [api.get(f"{CUSTOMERS}/quick-access").status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
    time.sleep(1.05)
    assert api.get(f"{CUSTOMERS}/quick-access").status_code == 200


@pytest.mark.parametrize("body", ["json", "html"])
def test_5xx_json_and_html(api, small_emulator, body):
    small_emulator.faults.update({"rate_5xx": 1, "body_5xx": body})
    seen = set()
    for _ in range(40):
        response = api.get(CUSTOMERS)
        seen.add(response.status_code)
        if body == "json":
            assert response.headers["content-type"] == "application/json"
            assert "message" in response.json()
        else:
            assert response.headers["content-type"].startswith("text/html")
            assert f"<h1>{response.status_code} " in response.text
    assert seen == {500, 502, 503, 504}


def test_5xx_rate_is_seeded_and_reproducible(small_emulator, served_url):
    def run() -> list[int]:
        # Assigning the seed, even the same one, restarts the sequence.
        small_emulator.faults.update({"rate_5xx": 0.3, "seed": 7})
        headers = {"EF-Access-Key": DEFAULT_KEY}
        with httpx.Client(base_url=served_url, headers=headers) as client:
            path = f"{CUSTOMERS}/quick-access"
            return [client.get(path).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 200 in first and any(status >= 500 for status in first)


def test_drop_closes_the_connection(api, small_emulator):
    small_emulator.faults.rate_drop = 1.0
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(CUSTOMERS)
    assert small_emulator.counts["dropped"] == 1
    small_emulator.faults.rate_drop = 0.0
    assert api.get(CUSTOMERS).status_code == 200


def test_stall_outlasts_a_client_timeout(served_url, small_emulator):
    small_emulator.faults.update({"rate_stall": 1, "stall_seconds": 5})
    headers = {"EF-Access-Key": DEFAULT_KEY}
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(served_url + CUSTOMERS, headers=headers, timeout=0.3)
    assert time.perf_counter() - started < 2
    # A patient client gets the answer once the stall is over.
    small_emulator.faults.stall_seconds = 0.2
    assert httpx.get(served_url + CUSTOMERS, headers=headers).status_code == 200
    assert small_emulator.counts["stalled"] == 2


def test_a_server_stopping_closes_stalled_connections(caplog):
    emulator = Emulator.cdnow(max_customers=50)
    emulator.faults.update({"rate_stall": 1, "stall_seconds": 60})
    headers = {"EF-Access-Key": DEFAULT_KEY}
    with ThreadPoolExecutor(3) as pool:
        with emulator.serve() as url:
            waiting = [
                pool.submit(httpx.get, url + CUSTOMERS, headers=headers, timeout=30)
                for _ in range(3)
            ]
            while emulator.counts["stalled"] < 3:
                time.sleep(0.01)
        # The server went away: the connections closed, with no 500.
        for request in waiting:
            with pytest.raises(httpx.RemoteProtocolError):
                request.result()
    assert "Exception in ASGI application" not in caplog.text


def test_es_window_on_a_large_synthetic_store():
    emulator = Emulator.synthetic(12_000)
    headers = {"EF-Access-Key": DEFAULT_KEY}
    with emulator.serve() as url, httpx.Client(base_url=url, headers=headers) as api:
        deep = {"per_page": 100, "page": 101, "sort": "last_order_date"}
        assert api.get(CUSTOMERS, params=deep).json()["data"]

        emulator.faults.es_window = True
        response = api.get(CUSTOMERS, params=deep)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json()["message"].startswith(
            "Result window is too large, from + size must be less than or equal "
            "to: [10000] but was [10100]."
        )
        edge = api.get(CUSTOMERS, params={**deep, "page": 100})
        assert edge.status_code == 200
        assert edge.json()["to"] == 10_000


def test_visibility_delay_hides_recent_events_from_lists_only(
    api, small_emulator, store
):
    small_emulator.set_clock(datetime(1997, 1, 10, tzinfo=UTC))
    now = api.get(f"{CUSTOMERS}/quick-access").json()
    small_emulator.faults.visibility_delay_seconds = 3 * 86400
    delayed = api.get(f"{CUSTOMERS}/quick-access").json()
    assert delayed["all"] < now["all"]
    assert get_list(api)["total"] == delayed["all"]

    visible = {
        r["customer_email"] for r in _walk(api, **{"columns[]": "customer_email"})
    }
    small_emulator.faults.visibility_delay_seconds = 0
    recent = [
        r["customer_email"]
        for r in _walk(api, **{"columns[]": "customer_email"})
        if r["customer_email"] not in visible
    ]
    assert len(recent) == now["all"] - delayed["all"]
    small_emulator.faults.visibility_delay_seconds = 3 * 86400
    assert api.get(details_path(recent[0])).status_code == 200


def test_page_drift_moves_the_clock_between_pages(api, small_emulator):
    small_emulator.set_clock(datetime(1997, 1, 15, tzinfo=UTC))
    small_emulator.faults.page_drift_seconds = 86400
    first = get_list(api, page=1)
    second = get_list(api, page=2)
    assert small_emulator.as_of == datetime(1997, 1, 17, tzinfo=UTC)
    assert second["total"] > first["total"]


def test_bad_data_on_list_page_one_only(api, small_emulator, store):
    kinds = ["money_string", "bad_date", "missing_email", "huge_field"]
    clean = get_list(api, per_page=10)["data"]
    small_emulator.faults.bad_data = kinds
    body = get_list(api, per_page=10)
    rows = body["data"]
    assert re.fullmatch(r"\d+,\d\d USD", rows[0]["total_revenue"])
    assert (
        rows[0]["total_revenue"]
        == f"{clean[0]['total_revenue']:.2f}".replace(".", ",") + " USD"
    )
    assert rows[1]["last_order_date"] == "31/02/1998 25:00"
    assert rows[2]["customer_email"] is None
    assert len(rows[3]["customer_city"]) == HUGE
    untouched = [0, 1, 2, 3]
    for index, (row, before) in enumerate(zip(rows, clean, strict=True)):
        changed = {k for k in row if row[k] != before[k]}
        assert len(changed) == (index in untouched), (index, changed)
    assert (
        get_list(api, per_page=10, page=2)["data"]
        == get_list(api, per_page=10, page=2)["data"]
    )
    small_emulator.faults.bad_data = []
    assert get_list(api, per_page=10, page=2)["data"][0]["customer_email"]


def test_bad_data_case_duplicate_and_html_200(api, small_emulator):
    clean = get_list(api, per_page=10)
    small_emulator.faults.bad_data = "case_duplicate"
    rows = get_list(api, per_page=10)["data"]
    assert len(rows) == 11
    twin = rows[-1]
    assert twin["customer_email"] != clean["data"][0]["customer_email"]
    assert twin["customer_email"].strip().lower() == (
        clean["data"][0]["customer_email"].lower()
    )
    assert {**twin, "customer_email": None} == {
        **clean["data"][0],
        "customer_email": None,
    }

    small_emulator.faults.bad_data = "html_200"
    page_one = api.get(CUSTOMERS)
    assert page_one.status_code == 200
    assert page_one.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(page_one.text)
    assert get_list(api, page=2)["data"]


def test_bad_data_in_details(api, small_emulator, store):
    address = store.list_customers(
        offset=0, limit=1, sort="total_orders", sort_direction="desc"
    )[0][0]["customer_email"]
    small_emulator.faults.bad_data = [
        "money_string",
        "bad_date",
        "case_duplicate",
        "huge_field",
    ]
    body = api.get(details_path(address)).json()
    assert body["stats"]["total_revenue"].endswith(" USD")
    assert body["orders"][0]["total"].endswith(" USD")
    assert body["stats"]["last_order_date"] == "31/02/1998 25:00"
    assert body["orders"][0]["date"] == "31/02/1998 25:00"
    assert body["customer"]["email"] == f"  {address.upper()} "
    assert len(body["customer"]["city"]) == HUGE

    small_emulator.faults.bad_data = "missing_email"
    assert api.get(details_path(address)).json()["customer"]["email"] is None
    small_emulator.faults.bad_data = "html_200"
    page = api.get(details_path(address))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


# -- the in-process transport serves the same bytes -----------------------------


def test_transport_matches_http_for_sync_async_and_threads(api, small_emulator):
    params = {"per_page": 50, "page": 3, "sort": "last_order_date"}
    over_http = api.get(CUSTOMERS, params=params).json()
    base = "http://" + api.base_url.netloc.decode() + "/api"
    headers = {"EF-Access-Key": DEFAULT_KEY}
    transport = small_emulator.transport()
    with httpx.Client(transport=transport, base_url=base, headers=headers) as client:
        assert client.get(CUSTOMERS, params=params).json() == over_http
        with ThreadPoolExecutor(8) as pool:
            pages = list(
                pool.map(
                    lambda page: client.get(
                        CUSTOMERS, params={**params, "page": page}
                    ).json()["current_page"],
                    range(1, 41),
                )
            )
        assert pages == list(range(1, 41))

    async def fetch() -> dict:
        async with httpx.AsyncClient(
            transport=transport, base_url=base, headers=headers
        ) as client:
            return (await client.get(CUSTOMERS, params=params)).json()

    assert asyncio.run(fetch()) == over_http


def test_transport_faults_raise_as_httpx_would(small_emulator):
    transport = small_emulator.transport()
    headers = {"EF-Access-Key": DEFAULT_KEY}
    with httpx.Client(
        transport=transport,
        base_url="https://app.elasticfunnels.io/api",
        headers=headers,
        timeout=0.2,
    ) as client:
        small_emulator.faults.rate_drop = 1
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(CUSTOMERS)
        small_emulator.faults.update({"rate_drop": 0, "rate_stall": 1})
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            client.get(CUSTOMERS)
        assert 0.2 <= time.perf_counter() - started < 1
        small_emulator.faults.rate_stall = 0
        body = client.get(CUSTOMERS).json()
        assert body["path"] == "https://app.elasticfunnels.io/api" + CUSTOMERS


# -- the command line -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_cli_serve_prints_its_url_and_answers_curl():
    command = [
        sys.executable,
        "-c",
        "import sys; from pipelines.cli import main; sys.exit(main())",
        "emulator",
        "serve",
        "--port",
        "0",
        "--max-customers",
        "300",
        "--latency-ms",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline().rstrip("\n")
        assert re.fullmatch(r"EFW_EMULATOR_BASE_URL=http://127\.0\.0\.1:\d+/api", first)
        base = first.split("=", 1)[1]
        banner = [process.stdout.readline() for _ in range(8)]
        assert f"EFW_EMULATOR_KEY={DEFAULT_KEY}\n" in banner
        assert any(line.strip().startswith("curl ") for line in banner)

        def curl(path: str, *extra: str) -> tuple[int, str]:
            out = subprocess.run(
                ["curl", "-s", "-w", "\n%{http_code}", *extra, base + path],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            body, _, status = out.rpartition("\n")
            return int(status), body

        key = ["-H", f"EF-Access-Key: {DEFAULT_KEY}"]
        status, body = curl(f"{CUSTOMERS}?per_page=5&sort=last_order_date", *key)
        page = json.loads(body)
        assert status == 200
        assert (page["per_page"], page["total"], len(page["data"])) == (5, 330, 5)
        status, body = curl(f"{CUSTOMERS}/quick-access", *key)
        assert (status, json.loads(body)["all"]) == (200, 330)
        address = urllib.parse.quote(page["data"][0]["customer_email"], safe="")
        status, body = curl(f"{CUSTOMERS}/{address}/details", *key)
        assert status == 200
        assert set(json.loads(body)) >= {"customer", "stats", "orders"}
        assert curl(CUSTOMERS) == (404, '{"message":"Not Found"}')
    finally:
        process.terminate()
        process.wait(timeout=10)
