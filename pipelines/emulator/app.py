"""The emulator: one framework-free request handler behind every door.

`Emulator.handle` takes an `EmulatorRequest` (method, raw path, raw query,
headers, body) and returns a `Reply` (status, headers, body, plus what the
door must do about latency, dropped connections and stalls). The Starlette app
in `server.py` and the httpx transport in `transport.py` only translate to and
from it, so both serve exactly the same API.
"""

from __future__ import annotations

import copy
import email.utils
import hmac
import json
import logging
import math
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pipelines.emulator.faults import (
    FaultDice,
    Faults,
    FaultsError,
    corrupt_details,
    corrupt_page,
    retry_after_header,
)
from pipelines.emulator.store import COLUMNS, SORT_DIRECTIONS, TYPES

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

    from pipelines.emulator.store import Store

logger = logging.getLogger("pipelines.emulator")

DEFAULT_BRAND = "1042"
DEFAULT_KEY = "efw-demo-key"

#: The columns the list route may return and the export may include.
ALLOWED_COLUMNS = COLUMNS
CUSTOMER_TYPES = TYPES
FILTER_KEYS = ("type", "q", "sort", "sort_direction")

#: Elasticsearch's default `index.max_result_window`.
ES_MAX_RESULT_WINDOW = 10_000

#: Laravel's paginator shows this many page links on each side of the current.
_ON_EACH_SIDE = 3
_MAX_PAGE = 2**31 - 1
_INTEGER = re.compile(r"[+-]?\d+")
_JSON = "application/json"
_HTML = "text/html; charset=UTF-8"

EXPORT_STARTED = "Export started. You will receive an email when it is ready."
_REASONS = {
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class EmulatorRequest:
    """One HTTP request as the handler sees it, before any decoding.

    `path` is the raw path, still percent-encoded and without the query;
    `query` is the raw query string; header names are lower case.
    """

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    scheme: str = "http"

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass
class Reply:
    """The handler's answer, and what the door must do before sending it.

    `action` is None (send it `delay` seconds after the request arrived),
    "drop" (close the connection without answering) or "stall" (send it only
    after `stall_seconds`, unless the client gives up first).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    delay: float = 0.0
    action: str | None = None
    stall_seconds: float = 0.0

    def wait_left(self, arrived: float) -> float:
        """Seconds still to wait so the answer leaves `delay` after `arrived`
        (a `time.monotonic()` reading): the latency a client sees is the
        one configured, the emulator's own work included, not added to it."""
        return max(0.0, self.delay - (time.monotonic() - arrived))


@dataclass(frozen=True)
class _Route:
    name: str
    methods: tuple[str, ...]
    brand: str
    email: str | None = None


class Emulator:
    """An ElasticFunnels customers API for one brand, served from a `Store`.

    Build one with `Emulator.cdnow()`, `Emulator.synthetic(n)` or
    `Emulator(store)`, then reach it in-process with `transport()` or over a
    loopback socket with `serve()`. `faults` switches misbehaviour on, `counts`
    and `exports` tell what clients did, and the clock methods move time.

    `brand`, `key` and `module_access` may be changed at any time: assigning a
    new `key` is a key rotation, and `module_access=False` stands for a key
    whose user lacks the customers module.
    """

    def __init__(
        self,
        store: Store,
        *,
        brand: str = DEFAULT_BRAND,
        key: str = DEFAULT_KEY,
        faults: Faults | None = None,
        module_access: bool = True,
    ) -> None:
        self.store = store
        self.brand = str(brand)
        self.key = key
        self.module_access = module_access
        self._faults = faults if faults is not None else Faults()
        self._dice = FaultDice()
        # The store is safe for concurrent reads and clock moves; this lock
        # guards only the emulator's own records.
        self._lock = threading.Lock()
        self._counts: Counter[str | int] = Counter()
        self._exports: list[dict[str, Any]] = []
        self._app: Starlette | None = None

    @classmethod
    def cdnow(
        cls,
        *,
        max_customers: int | None = None,
        seed: int = 0,
        as_of: datetime | None = None,
        **kwargs: Any,
    ) -> Emulator:
        """An emulator over the CDNOW customers (optionally the first N)."""
        from pipelines.emulator import data, store

        dataset = data.load_cdnow(seed=seed, max_customers=max_customers)
        return cls(store.Store(dataset, as_of=as_of), **kwargs)

    @classmethod
    def synthetic(
        cls,
        customers: int,
        *,
        seed: int = 0,
        as_of: datetime | None = None,
        **kwargs: Any,
    ) -> Emulator:
        """An emulator over `customers` generated customers."""
        from pipelines.emulator import data, store

        dataset = data.synthetic(customers, seed=seed)
        return cls(store.Store(dataset, as_of=as_of), **kwargs)

    def __repr__(self) -> str:
        # Never show the key: reprs end up in logs and test output.
        return f"<Emulator brand={self.brand!r} as_of={iso(self.as_of)}>"

    # -- clock --------------------------------------------------------------

    @property
    def as_of(self) -> datetime:
        """The emulator's now: events after it have not happened yet."""
        return self.store.as_of

    def set_clock(self, as_of: datetime) -> None:
        """Move the clock to `as_of` (naive datetimes are taken as UTC)."""
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        self.store.set_clock(as_of)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.store.advance(seconds)

    # -- faults and records -------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The live fault settings; mutate them or assign a new `Faults`."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults

    @property
    def counts(self) -> Counter[str | int]:
        """Customer-route requests so far, a copy.

        Keys are route names ("list", "details", "quick_access", "export"),
        status codes as ints (429, 200, ...), and "dropped" and "stalled" for
        the connections those faults hit. Admin routes are not counted.
        """
        with self._lock:
            return Counter(self._counts)

    @property
    def exports(self) -> list[dict[str, Any]]:
        """The bodies of accepted export requests, oldest first, a copy."""
        with self._lock:
            return copy.deepcopy(self._exports)

    def reset_counts(self) -> None:
        """Forget the request counts and the recorded exports."""
        with self._lock:
            self._counts.clear()
            self._exports.clear()

    # -- doors --------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        """The Starlette ASGI app serving this emulator."""
        if self._app is None:
            from pipelines.emulator.server import build_app

            self._app = build_app(self)
        return self._app

    def transport(self) -> httpx.BaseTransport:
        """An in-process httpx transport for `httpx.Client` and `AsyncClient`."""
        from pipelines.emulator.transport import EmulatorTransport

        return EmulatorTransport(self)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve over HTTP on a loopback socket in a background thread.

        Yields the base URL, such as `http://127.0.0.1:PORT/api`; port 0 picks
        a free port. The server stops when the block ends.
        """
        from pipelines.emulator.server import serve_in_thread

        with serve_in_thread(self, host, port) as base_url:
            yield base_url

    # -- the handler ----------------------------------------------------------

    def handle(self, request: EmulatorRequest) -> Reply:
        """Answer one request; never raises."""
        try:
            return self._handle(request)
        except Exception:
            # The path may hold an email, so only the method is logged.
            logger.exception("emulator failed on a %s request", request.method)
            return _json(500, {"message": "Server Error"})

    def _handle(self, request: EmulatorRequest) -> Reply:
        path = request.path or "/"
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        segments = path.split("/")[1:]
        method = "GET" if request.method == "HEAD" else request.method

        if segments[:1] == ["_emulator"]:
            return self._admin(method, segments[1:], request)
        if segments[:2] == ["api", "_emulator"]:
            return self._admin(method, segments[2:], request)

        route = _match(segments)
        if route is None:
            return self._count_status(_json(404, {"message": "Not Found"}))
        if method not in route.methods:
            return self._count_status(_not_allowed(method, path, route.methods))
        reply = self._customers(route, request, path)
        if request.method == "HEAD":
            reply.body = b""
        return reply

    def _count_status(self, reply: Reply) -> Reply:
        with self._lock:
            self._counts[reply.status] += 1
        return reply

    def _customers(self, route: _Route, request: EmulatorRequest, path: str) -> Reply:
        # Faults strike before authentication, as the load balancer and rate
        # limiter in front of the vendor's application would.
        faults = self._faults
        decision = self._dice.roll(faults)
        with self._lock:
            self._counts[route.name] += 1
            if decision.action == "drop":
                self._counts["dropped"] += 1
                return Reply(0, [], b"", delay=decision.delay, action="drop")

        if decision.action == "429":
            reply = _too_many_requests(faults)
        elif decision.action == "5xx":
            reply = _server_error(decision.status or 500, faults.body_5xx)
        else:
            reply = self._authenticate(request, route.brand) or self._dispatch(
                route, request, path
            )

        reply.delay = decision.delay
        if decision.action == "stall":
            reply.action = "stall"
            reply.stall_seconds = faults.stall_seconds
            with self._lock:
                self._counts["stalled"] += 1
        return self._count_status(reply)

    def _authenticate(self, request: EmulatorRequest, brand: str) -> Reply | None:
        supplied = request.header("ef-access-key")
        if not supplied:
            if _prefers_html(request.header("accept")):
                return _login_redirect(request)
            return _json(404, {"message": "Not Found"})
        if not hmac.compare_digest(supplied.encode(), self.key.encode()):
            return _json(401, {"message": "Invalid API key"})
        if brand != self.brand:
            return _json(401, {"message": "Invalid API key or brand access denied"})
        if not self.module_access:
            message = "You do not have permission to access the customers module."
            return _json(403, {"message": message})
        return None

    def _dispatch(self, route: _Route, request: EmulatorRequest, path: str) -> Reply:
        if route.name == "list":
            return self._list(request, path)
        if route.name == "quick_access":
            counts = self.store.quick_access(
                visibility_delay=self._faults.visibility_delay_seconds
            )
            return _json(200, counts)
        if route.name == "details":
            return self._details(route.email or "", request)
        return self._export(request)

    # -- customer routes ------------------------------------------------------

    def _list(self, request: EmulatorRequest, path: str) -> Reply:
        params = _php_query(request.query)
        errors: dict[str, str] = {}
        page = _integer(params, "page", 1, (1, None), errors)
        per_page = _integer(params, "per_page", 25, (1, 100), errors)
        kind = _choice(params, "type", CUSTOMER_TYPES, errors)
        q = _string(params, "q", errors)
        sort = _choice(params, "sort", tuple(self.store.SORTABLE_COLUMNS), errors)
        direction = _choice(params, "sort_direction", SORT_DIRECTIONS, errors)
        columns = _columns(params, errors)
        if errors:
            return _validation_error(errors)

        faults = self._faults
        if faults.es_window and page * per_page > ES_MAX_RESULT_WINDOW:
            return _json(500, {"message": _es_window_message(page * per_page)})
        if page == 1 and "html_200" in faults.bad_data:
            return _html(200, _MAINTENANCE_PAGE)

        try:
            rows, total = self.store.list_customers(
                offset=(page - 1) * per_page,
                limit=per_page,
                type=kind,
                q=q,
                sort=sort,
                sort_direction=direction or "asc",
                columns=columns,
                visibility_delay=faults.visibility_delay_seconds,
            )
        except ValueError as exc:
            # The store's ValidationError names the field it refused.
            field_name = getattr(exc, "field", None) or "query"
            message = getattr(exc, "message", None) or str(exc)
            return _validation_error({field_name: message})
        if faults.page_drift_seconds:
            self.store.advance(faults.page_drift_seconds)

        served = len(rows)
        if page == 1 and faults.bad_data:
            rows = corrupt_page(rows, faults.bad_data)
        base = f"{request.scheme}://{request.header('host') or 'localhost'}{path}"
        body = _paginator(base, params, rows, served, total, page, per_page)
        return _json(200, body)

    def _details(self, email_address: str, request: EmulatorRequest) -> Reply:
        params = _php_query(request.query)
        errors: dict[str, str] = {}
        orders = _boolean(params, "include_orders", errors)
        subscriptions = _boolean(params, "include_subscriptions", errors)
        if errors:
            return _validation_error(errors)

        payload = self.store.details(
            email_address,
            include_orders=orders,
            include_subscriptions=subscriptions,
        )
        if payload is None:
            return _json(404, {"message": "Customer not found."})
        kinds = self._faults.bad_data
        if "html_200" in kinds:
            return _html(200, _MAINTENANCE_PAGE)
        if kinds:
            payload = corrupt_details(payload, kinds)
        return _json(200, payload)

    def _export(self, request: EmulatorRequest) -> Reply:
        try:
            body = json.loads(request.body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            message = "The request body must be a JSON object."
            return _validation_error({"body": message})

        errors: dict[str, str] = {}
        columns = body.get("columns")
        if columns is not None and (
            not isinstance(columns, list)
            or not all(isinstance(c, str) and c in ALLOWED_COLUMNS for c in columns)
        ):
            errors["columns"] = "The selected columns is invalid."
        self._check_filters(body.get("filters"), errors)
        emails = body.get("selected_emails")
        if emails is not None and (
            not isinstance(emails, list) or not all(isinstance(e, str) for e in emails)
        ):
            errors["selected_emails"] = "The selected emails must be a list of emails."
        if errors:
            return _validation_error(errors)

        with self._lock:
            self._exports.append(copy.deepcopy(body))
        return _json(200, {"success": True, "message": EXPORT_STARTED})

    def _check_filters(self, filters: Any, errors: dict[str, str]) -> None:
        if filters is None:
            return
        # PHP has one array type: a JSON object and a JSON list of objects
        # both reach the vendor as "filters"; an empty list means none.
        if isinstance(filters, list) and all(isinstance(f, dict) for f in filters):
            merged: dict[str, Any] = {}
            for item in filters:
                merged.update(item)
            filters = merged
        if not isinstance(filters, dict):
            errors["filters"] = "The filters field must be an object."
            return
        choices = {
            "type": CUSTOMER_TYPES,
            "sort": tuple(self.store.SORTABLE_COLUMNS),
            "sort_direction": SORT_DIRECTIONS,
        }
        for key, value in filters.items():
            name = f"filters.{key}"
            if key not in FILTER_KEYS:
                errors[name] = f"The {name} field is not a known filter."
            elif value is None:
                continue
            elif key == "q":
                if not isinstance(value, str):
                    errors[name] = f"The {name} field must be a string."
            elif value not in choices[key]:
                errors[name] = f"The selected {name} is invalid."

    # -- admin routes ---------------------------------------------------------

    def _admin(
        self, method: str, segments: list[str], request: EmulatorRequest
    ) -> Reply:
        path = "/_emulator/" + "/".join(segments)
        routes: dict[str, dict[str, Callable[[EmulatorRequest], Reply]]] = {
            "clock": {"GET": self._get_clock, "POST": self._post_clock},
            "faults": {"GET": self._get_faults, "POST": self._post_faults},
            "stats": {"GET": self._get_stats},
            "stats/reset": {"POST": self._reset_stats},
        }
        handlers = routes.get("/".join(segments))
        if handlers is None:
            return _json(404, {"message": "Not Found"})
        if method not in handlers:
            return _not_allowed(method, path, tuple(handlers))
        return handlers[method](request)

    def _get_clock(self, request: EmulatorRequest) -> Reply:
        return _json(200, {"as_of": iso(self.as_of)})

    def _post_clock(self, request: EmulatorRequest) -> Reply:
        body = _json_object(request.body)
        if body is None or not ({"as_of", "advance_seconds"} & body.keys()):
            message = 'Send {"as_of": ISO-8601} or {"advance_seconds": N}.'
            return _validation_error({"as_of": message})
        if "as_of" in body:
            try:
                moment = datetime.fromisoformat(str(body["as_of"]))
            except ValueError:
                message = "The as of field must be an ISO-8601 date-time."
                return _validation_error({"as_of": message})
            self.set_clock(moment)
        if "advance_seconds" in body:
            seconds = body["advance_seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                message = "The advance seconds field must be a number."
                return _validation_error({"advance_seconds": message})
            self.advance(seconds)
        return self._get_clock(request)

    def _get_faults(self, request: EmulatorRequest) -> Reply:
        return _json(200, self._faults.to_dict())

    def _post_faults(self, request: EmulatorRequest) -> Reply:
        body = _json_object(request.body)
        if body is None:
            return _validation_error({"body": "Send a JSON object of fault settings."})
        try:
            self._faults.update(body)
        except FaultsError as exc:
            return _validation_error(exc.errors)
        return self._get_faults(request)

    def _get_stats(self, request: EmulatorRequest) -> Reply:
        counts = {str(key): value for key, value in self.counts.items()}
        return _json(200, {"counts": counts, "exports": self.exports})

    def _reset_stats(self, request: EmulatorRequest) -> Reply:
        self.reset_counts()
        return self._get_stats(request)


# -- routing ------------------------------------------------------------------


_PRINTABLE = "".join(chr(code) for code in range(0x21, 0x7F))


def raw_path_text(raw: bytes) -> str:
    """A raw request path as text, percent-encoding bytes outside ASCII.

    Existing escapes are kept as they are: the handler decodes each segment
    exactly once, whichever door the request came through.
    """
    return urllib.parse.quote_from_bytes(raw, safe=_PRINTABLE)


def _match(segments: list[str]) -> _Route | None:
    if len(segments) < 4 or segments[:2] != ["api", "brands"]:
        return None
    if segments[3] != "customers" or not segments[2]:
        return None
    brand = urllib.parse.unquote(segments[2])
    rest = segments[4:]
    if not rest:
        return _Route("list", ("GET",), brand)
    if rest == ["quick-access"]:
        return _Route("quick_access", ("GET",), brand)
    if rest == ["export"]:
        return _Route("export", ("POST",), brand)
    if len(rest) == 2 and rest[1] == "details" and rest[0]:
        # The email is decoded exactly once, and `+` stays `+`: unquote,
        # unlike unquote_plus, leaves it alone.
        return _Route("details", ("GET",), brand, urllib.parse.unquote(rest[0]))
    return None


def _not_allowed(method: str, path: str, allowed: tuple[str, ...]) -> Reply:
    message = (
        f"The {method} method is not supported for route {path.lstrip('/')}. "
        f"Supported methods: {', '.join(allowed)}."
    )
    reply = _json(405, {"message": message})
    reply.headers.append(("allow", ", ".join(allowed)))
    return reply


def _prefers_html(accept: str | None) -> bool:
    """Whether an Accept header ranks HTML above JSON, as a browser's does."""
    html_q = json_q = 0.0
    for item in (accept or "").split(","):
        media, *options = [part.strip() for part in item.split(";")]
        q = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, q)
        elif media in ("application/json", "application/*", "*/*") or media.endswith(
            "+json"
        ):
            json_q = max(json_q, q)
    return html_q > json_q


# -- query parameters, Laravel style ------------------------------------------


def _php_query(raw: str) -> dict[str, str | list[str]]:
    """Parse a query string the way PHP fills `$_GET`.

    `name[]=a&name[]=b` (or `name[0]=a`) gives a list; a repeated plain
    `columns` gives a list too, as the API promises; any other repeated name
    keeps its last value.
    """
    params: dict[str, str | list[str]] = {}
    for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        name, bracket, _ = key.partition("[")
        existing = params.get(name)
        if bracket:
            items = existing if isinstance(existing, list) else []
        elif name == "columns" and existing is not None:
            items = existing if isinstance(existing, list) else [existing]
        else:
            params[name] = value
            continue
        items.append(value)
        params[name] = items
    return params


def _build_query(params: dict[str, str | list[str]], page: int) -> str:
    """The query string of a page URL, encoded as PHP's http_build_query."""
    merged = dict(params)
    merged["page"] = str(page)  # keeps its place when the client sent one
    quote = urllib.parse.quote
    parts = []
    for key, value in merged.items():
        if isinstance(value, list):
            parts.extend(
                f"{quote(key, safe='')}%5B{index}%5D={quote(item, safe='')}"
                for index, item in enumerate(value)
            )
        else:
            parts.append(f"{quote(key, safe='')}={quote(value, safe='')}")
    return "&".join(parts)


def _label(name: str) -> str:
    return name.replace("_", " ")


def _integer(
    params: dict[str, Any],
    name: str,
    default: int,
    bounds: tuple[int, int | None],
    errors: dict[str, str],
) -> int:
    """An integer parameter; `bounds` is (min, max) or (min, None)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or not _INTEGER.fullmatch(raw):
        errors[name] = f"The {_label(name)} field must be an integer."
        return default
    value = int(raw)
    low, high = bounds
    if high is not None and not low <= value <= high:
        errors[name] = f"The {_label(name)} field must be between {low} and {high}."
    elif value < low:
        errors[name] = f"The {_label(name)} field must be at least {low}."
    elif value > _MAX_PAGE:
        limit = _MAX_PAGE
        errors[name] = f"The {_label(name)} field must not be greater than {limit}."
    return value


def _choice(
    params: dict[str, Any], name: str, allowed: tuple[str, ...], errors: dict[str, str]
) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or raw not in allowed:
        errors[name] = f"The selected {_label(name)} is invalid."
        return None
    return raw


def _string(params: dict[str, Any], name: str, errors: dict[str, str]) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        errors[name] = f"The {_label(name)} field must be a string."
        return None
    return raw


def _columns(params: dict[str, Any], errors: dict[str, str]) -> list[str] | None:
    raw = params.get("columns")
    if raw is None:
        return None
    values = raw if isinstance(raw, list) else [raw]
    if not values or any(value not in ALLOWED_COLUMNS for value in values):
        errors["columns"] = "The selected columns is invalid."
        return None
    return list(dict.fromkeys(values))


def _boolean(params: dict[str, Any], name: str, errors: dict[str, str]) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return True
    text = raw.lower() if isinstance(raw, str) else None
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    errors[name] = f"The {_label(name)} field must be true or false."
    return True


# -- bodies -------------------------------------------------------------------


def _paginator(
    base: str,
    params: dict[str, str | list[str]],
    rows: list[dict[str, Any]],
    served: int,
    total: int,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    """A Laravel length-aware paginator body, keys in Laravel's order."""
    last_page = max(1, math.ceil(total / per_page))
    offset = (page - 1) * per_page

    def url(number: int) -> str:
        return f"{base}?{_build_query(params, number)}"

    previous_url = url(page - 1) if page > 1 else None
    next_url = url(page + 1) if page < last_page else None
    return {
        "current_page": page,
        "data": rows,
        "first_page_url": url(1),
        "from": offset + 1 if served else None,
        "last_page": last_page,
        "last_page_url": url(last_page),
        "links": _links(page, last_page, url, previous_url, next_url),
        "next_page_url": next_url,
        "path": base,
        "per_page": per_page,
        "prev_page_url": previous_url,
        "to": offset + served if served else None,
        "total": total,
    }


def _links(
    page: int,
    last_page: int,
    url: Callable[[int], str],
    previous_url: str | None,
    next_url: str | None,
) -> list[dict[str, Any]]:
    """Laravel's `links`: previous, a window of page numbers, next.

    Small paginators list every page; larger ones show the first ten, the last
    ten, or two at each end around the current page and three on each side of
    it, with "..." between the groups.
    """
    side = _ON_EACH_SIDE
    window = side + 4
    if last_page < side * 2 + 8:
        groups = [range(1, last_page + 1)]
    elif page <= window:
        groups = [range(1, window + side + 1), range(last_page - 1, last_page + 1)]
    elif page > last_page - window:
        groups = [range(1, 3), range(last_page - window - side + 1, last_page + 1)]
    else:
        groups = [
            range(1, 3),
            range(page - side, page + side + 1),
            range(last_page - 1, last_page + 1),
        ]

    links = [{"url": previous_url, "label": "&laquo; Previous", "active": False}]
    for index, group in enumerate(groups):
        if index:
            links.append({"url": None, "label": "...", "active": False})
        links.extend(
            {"url": url(number), "label": str(number), "active": number == page}
            for number in group
        )
    links.append({"url": next_url, "label": "Next &raquo;", "active": False})
    return links


def _es_window_message(window: int) -> str:
    return (
        "Result window is too large, from + size must be less than or equal "
        f"to: [{ES_MAX_RESULT_WINDOW}] but was [{window}]. See the scroll api "
        "for a more efficient way to request large data sets. This limit can "
        "be set by changing the [index.max_result_window] index level setting."
    )


def _too_many_requests(faults: Faults) -> Reply:
    reply = _json(429, {"message": "Too Many Attempts."})
    retry_after = retry_after_header(faults.retry_after)
    if retry_after is not None:
        reply.headers.append(("retry-after", retry_after))
    if faults.rps_budget:
        reply.headers.append(("x-ratelimit-limit", str(int(faults.rps_budget))))
        reply.headers.append(("x-ratelimit-remaining", "0"))
    return reply


def _server_error(status: int, body: str) -> Reply:
    reason = _REASONS.get(status, "Server Error")
    if body == "html":
        page = _ERROR_PAGE.format(status=status, reason=reason)
        return _html(status, page)
    return _json(status, {"message": reason})


def _login_redirect(request: EmulatorRequest) -> Reply:
    host = request.header("host")
    location = f"{request.scheme}://{host}/login" if host else "/login"
    reply = _html(302, _REDIRECT_PAGE.format(location=location))
    reply.headers.append(("location", location))
    return reply


def _validation_error(errors: dict[str, str]) -> Reply:
    """A Laravel 422: the first message, then how many more there are."""
    messages = list(errors.values())
    message = messages[0]
    if len(messages) > 1:
        more = len(messages) - 1
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    body = {"message": message, "errors": {k: [v] for k, v in errors.items()}}
    return _json(422, body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _json(status: int, payload: Any) -> Reply:
    body = json.dumps(payload, default=_json_default, separators=(",", ":"))
    return Reply(status, _headers(_JSON), body.encode())


def _html(status: int, page: str) -> Reply:
    return Reply(status, _headers(_HTML), page.encode())


def _headers(content_type: str) -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("date", email.utils.formatdate(usegmt=True)),
        ("cache-control", "no-cache, private"),
    ]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def iso(moment: datetime) -> str:
    """A datetime as ISO 8601 in UTC with a Z, as the API writes dates."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ERROR_PAGE = """<html>
<head><title>{status} {reason}</title></head>
<body>
<center><h1>{status} {reason}</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""

_REDIRECT_PAGE = """<!DOCTYPE html>
<html>
    <head>
        <meta charset="UTF-8" />
        <meta http-equiv="refresh" content="0;url='{location}'" />
        <title>Redirecting to {location}</title>
    </head>
    <body>
        Redirecting to <a href="{location}">{location}</a>.
    </body>
</html>
"""

_MAINTENANCE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>ElasticFunnels</title></head>
<body>
<h1>We'll be right back</h1>
<p>ElasticFunnels is undergoing scheduled maintenance.</p>
</body>
</html>
"""
