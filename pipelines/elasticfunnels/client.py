"""HTTP for the customers API: one httpx client a run, polite and persistent.

The client bounds its own concurrency and request rate (the vendor publishes
no limit), retries what is transient (429, 5xx, timeouts, dropped connections,
HTML where JSON was due) with exponential backoff and jitter, and turns what is
not into errors that name the setting to change.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
)

from pipelines import __version__
from pipelines.elasticfunnels import settings
from pipelines.elasticfunnels.exceptions import (
    ApiError,
    AuthError,
    ConfigurationError,
    RequestRejected,
    UnreadableAnswer,
)

logger = logging.getLogger("efw.http")

USER_AGENT = f"efw/{__version__} (+httpx/{httpx.__version__})"
KEY_SETTING = "SOURCES__ELASTICFUNNELS__ACCESS_KEY"
BRAND_SETTING = "SOURCES__ELASTICFUNNELS__BRAND"
BASE_URL_SETTING = "SOURCES__ELASTICFUNNELS__BASE_URL"
#: Details answers whose JSON body does not parse, before they count as broken.
UNREADABLE_TRIES = 3


class TransientError(Exception):
    """One failed attempt that is worth another; carries the server's wish."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        unreachable: bool = False,
        unreadable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable
        # A JSON body that does not parse: cut short on the way, worth a few
        # more tries; or broken at the source, which no wait mends.
        self.unreadable = unreadable


@dataclass
class RequestStats:
    """Counters a run reports in its summary; safe to bump from many threads."""

    requests: int = 0
    retries: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, route: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] = self.by_route.get(route, 0) + 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1


class RateLimiter:
    """A token bucket: at most `rate` request starts a second, small bursts."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._lock = threading.Lock()
        self._next_at = time.monotonic()

    def wait(self) -> None:
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + 1.0 / self.rate
        if start > now:
            time.sleep(start - now)


def _certificate_refusal(exc: BaseException) -> str | None:
    """Why TLS refused the server's certificate, if that is what `exc` is.

    httpx wraps httpcore's error, which wraps the `ssl` one; other TLS
    failures (a handshake cut short) stay transient.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or cause.reason or "certificate refused"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def quote_email(email: str) -> str:
    """Encode an email as one path segment: nothing is safe, `@` included."""
    return quote(email, safe="")


class ApiClient:
    """Talks to `/brands/{brand}/customers` for one sync run."""

    def __init__(
        self,
        base_url: str,
        brand: str,
        access_key: str,
        *,
        concurrency: int = settings.DEFAULT_CONCURRENCY,
        max_requests_per_second: float | None = None,
        timeout: float = settings.DEFAULT_TIMEOUT_SECONDS,
        retry_budget: float = settings.DEFAULT_RETRY_BUDGET_SECONDS,
        retry_floor: float = settings.DEFAULT_RETRY_FLOOR_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Pasted settings often carry a space or a newline at either end.
        base_url, brand = (base_url or "").strip(), str(brand or "").strip()
        access_key = (access_key or "").strip()
        if not base_url:
            raise ConfigurationError(
                f"No API base URL is set. Set `base_url` under "
                f"[sources.elasticfunnels] or {BASE_URL_SETTING}."
            )
        if not brand:
            raise ConfigurationError(
                f"No brand is set. Set `brand` under [sources.elasticfunnels] "
                f"or {BRAND_SETTING}."
            )
        if not access_key:
            raise ConfigurationError(
                f"No access key is set. Put `access_key` in .dlt/secrets.toml "
                f"under [sources.elasticfunnels] or set {KEY_SETTING}."
            )
        # Anything in the key that a header cannot carry means a key copied
        # wrong. Its value is never shown.
        if not access_key.isascii() or not access_key.isprintable():
            raise ConfigurationError(
                "The access key holds characters an HTTP header cannot carry "
                "(not printable ASCII); it was probably copied wrong. Set it "
                f"again in .dlt/secrets.toml or {KEY_SETTING}."
            )
        try:
            url: httpx.URL | None = httpx.URL(base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"The API base URL `{base_url}` is not an http(s) URL with a "
                f"host, such as https://app.elasticfunnels.io/api. Fix "
                f"`base_url` under [sources.elasticfunnels] or {BASE_URL_SETTING}."
            )
        if concurrency < 1:
            raise ConfigurationError(
                f"`concurrency` must be at least 1, not {concurrency}. Fix it "
                "under [sources.elasticfunnels] or "
                "SOURCES__ELASTICFUNNELS__CONCURRENCY."
            )
        self.brand = str(brand)
        self.host = url.host
        # Whether the API has answered JSON this run: a host that never did
        # is more likely a wrong `base_url` than an outage.
        self.answered = False
        self.prefix = f"/brands/{quote(self.brand, safe='')}/customers"
        self.retry_budget = retry_budget
        self.retry_floor = retry_floor
        self.stats = RequestStats()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._limiter = RateLimiter(max_requests_per_second)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "EF-Access-Key": access_key,
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            ),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The three reads a sync makes.

    def list_page(
        self,
        page: int,
        per_page: int,
        *,
        sort: str,
        direction: str,
        type: str | None = None,
        q: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "page": page,
            "per_page": per_page,
            "sort": sort,
            "sort_direction": direction,
        }
        if type:
            params["type"] = type
        if q:
            params["q"] = q
        body = self._get_json("list", self.prefix, params)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ApiError(
                f"The customer list (page {page}) did not answer a paginator "
                f"with a `data` array; got {type_name(body)}. The API may have "
                f"changed; check {BASE_URL_SETTING}."
            )
        return body

    def quick_access(self) -> dict[str, Any]:
        body = self._get_json("quick_access", f"{self.prefix}/quick-access", {})
        if not isinstance(body, dict):
            raise ApiError(f"quick-access answered {type_name(body)}, not an object.")
        return body

    def details(self, email: str) -> Any:
        """A customer's details, or None when the API no longer knows them.

        Raises `UnreadableAnswer` when they keep coming back as broken JSON.
        """
        path = f"{self.prefix}/{quote_email(email)}/details"
        params = {"include_orders": "true", "include_subscriptions": "true"}
        # Any other shape is one customer's bad record, for the source to
        # quarantine; it does not stop the sync.
        return self._get_json("details", path, params, missing_ok=True)

    # Plumbing.

    def _get_json(
        self,
        route: str,
        path: str,
        params: dict[str, Any],
        *,
        missing_ok: bool = False,
    ) -> Any:
        unreadable = 0

        def worth_another(exc: BaseException) -> bool:
            nonlocal unreadable
            if not isinstance(exc, TransientError):
                return False
            # A list page cannot be skipped, so it keeps trying as long as
            # the budget allows; one customer's details can be set aside.
            unreadable += exc.unreadable and route == "details"
            return unreadable < UNREADABLE_TRIES

        retrying = Retrying(
            retry=retry_if_exception(worth_another),
            # Stops before a wait that would end past the budget, however
            # long a `Retry-After` the server asks for.
            stop=stop_before_delay(self.retry_budget),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(route, path, params, missing_ok)
        except TransientError as exc:
            if exc.unreadable and unreadable >= UNREADABLE_TRIES:
                raise UnreadableAnswer(
                    f"The {describe(route)} answered {UNREADABLE_TRIES} times "
                    "with a body that is not valid JSON."
                ) from None
            asked = (
                f" (it asked to wait {exc.retry_after:.0f} s more)"
                if exc.retry_after
                else ""
            )
            where = (
                f"If `{self.host}` is not the API's host, fix `base_url` "
                f"({BASE_URL_SETTING}); if it is, the API may be down. "
                if exc.unreachable and not self.answered
                else ""
            )
            raise ApiError(
                f"The {describe(route)} kept failing, and retrying would have "
                f"run past `retry_budget_seconds` ({self.retry_budget:g} s); "
                f"last: {exc.reason}{asked}. {where}"
                "Nothing was loaded from this run; rerun `efw sync` later, or "
                "raise `retry_budget_seconds` under [sources.elasticfunnels]."
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, route: str, path: str, params: dict[str, Any], missing_ok: bool
    ) -> Any:
        self._limiter.wait()
        with self._slots:
            self.stats.count(route)
            try:
                response = self._http.get(path, params=params)
            except httpx.TimeoutException as exc:
                raise TransientError(
                    f"timed out ({type(exc).__name__})",
                    # No connection at all, as from a host that drops packets.
                    unreachable=isinstance(exc, httpx.ConnectTimeout),
                ) from None
            except httpx.TransportError as exc:
                refused = _certificate_refusal(exc)
                if refused is not None:
                    # Another try meets the same certificate.
                    raise ConfigurationError(
                        f"The TLS certificate of `{self.host}` could not be "
                        f"verified ({refused}), so no request was sent. If "
                        f"`{self.host}` is not the API's host, fix `base_url` "
                        f"({BASE_URL_SETTING}). If a proxy on your network "
                        "re-signs HTTPS, point the SSL_CERT_FILE environment "
                        "variable at its CA bundle. Nothing was loaded."
                    ) from None
                # httpx's text names the host and the socket's error, never
                # a header: "[Errno -2] Name or service not known".
                said = str(exc)[:300]
                raise TransientError(
                    f"connection failed ({type(exc).__name__}"
                    f"{': ' + said if said else ''})",
                    unreachable=True,
                ) from None
        logger.debug("GET %s -> %s", route, response.status_code)
        return self._read(route, response, missing_ok)

    def _read(self, route: str, response: httpx.Response, missing_ok: bool) -> Any:
        status = response.status_code
        if status == 429:
            raise TransientError(
                "429 Too Many Requests",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise TransientError(
                f"{status} {response.reason_phrase}",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise AuthError(self._auth_message(status, response))
        if status == 404:
            if missing_ok and _is_json(response):
                return None
            raise ConfigurationError(
                f"The {describe(route)} answered 404: the base URL or the brand "
                f"`{self.brand}` is wrong, or the key header did not arrive. "
                f"Check {BASE_URL_SETTING} and {BRAND_SETTING}."
            )
        if status == 422:
            raise RequestRejected(
                f"The API refused a parameter of the {describe(route)}: "
                f"{_rejected_fields(response)}. Check `per_page` (1 to 100) "
                "under [sources.elasticfunnels]."
            )
        if 300 <= status < 400:
            # Only where it points, not the path, which may hold an email.
            target = httpx.URL(response.headers.get("Location", ""))
            where = f" to {target.scheme}://{target.host}" if target.host else ""
            raise ConfigurationError(
                f"The {describe(route)} answered {status} "
                f"{response.reason_phrase}{where}: the API is elsewhere than "
                f"`base_url` says. Set `base_url` ({BASE_URL_SETTING}) to the "
                "API's address (https://app.elasticfunnels.io/api)."
            )
        if status >= 300:
            raise ApiError(
                f"The {describe(route)} answered {status} "
                f"{response.reason_phrase}; efw expects 200."
            )
        if not _is_json(response):
            # Proxies and maintenance pages answer HTML with a 200; so does a
            # website `base_url` points at by mistake, if nothing here ever
            # answered JSON.
            raise TransientError(
                f"200 with a {response.headers.get('Content-Type', 'missing')} "
                "body instead of JSON",
                unreachable=True,
            )
        self.answered = True
        return _decode(response)

    def _auth_message(self, status: int, response: httpx.Response) -> str:
        said = _message(response)
        if status == 403:
            return (
                f"The API answered 403 ({said}): the key works but its user "
                f"lacks the `customers` module permission for brand "
                f"`{self.brand}`. Grant it in ElasticFunnels or use another "
                f"key ({KEY_SETTING})."
            )
        if "brand" in said.lower():
            return (
                f"The API answered 401 ({said}): the key has no access to brand "
                f"`{self.brand}`. Check {BRAND_SETTING}, or use a key of that "
                f"brand ({KEY_SETTING})."
            )
        return (
            f"The API answered 401 ({said}): the access key is wrong or was "
            f"rotated. Set a valid one in {KEY_SETTING} or .dlt/secrets.toml."
        )

    def _wait(self, state: RetryCallState) -> float:
        # Exponential backoff with full jitter, never below the floor and never
        # sooner than the server asked; capped so one wait cannot eat the budget.
        exc = state.outcome.exception() if state.outcome else None
        backoff = self.retry_floor * 2 ** (state.attempt_number - 1)
        wait = random.uniform(self.retry_floor, max(self.retry_floor, min(backoff, 60)))
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            wait = max(wait, asked, self.retry_floor)
        return wait

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.count_retry()
        exc = state.outcome.exception() if state.outcome else None
        logger.info(
            "retrying after %s (attempt %d, waiting %.1f s)",
            getattr(exc, "reason", exc),
            state.attempt_number,
            state.upcoming_sleep,
        )


def describe(route: str) -> str:
    return {
        "list": "customer list",
        "details": "customer details request",
        "quick_access": "quick-access counts",
    }.get(route, route)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _decode(response: httpx.Response) -> Any:
    """The JSON body: orjson first, at a fraction of the standard library's
    CPU, which then decides what orjson refuses (NaN, Infinity, UTF-16)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return response.json()
    except ValueError:
        raise TransientError(
            "200 with a body that is not valid JSON", unreadable=True
        ) from None


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("Content-Type", "").lower()


def _message(response: httpx.Response) -> str:
    if _is_json(response):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"][:200]
    return f"no JSON message, Content-Type {response.headers.get('Content-Type')}"


def _rejected_fields(response: httpx.Response) -> str:
    if _is_json(response):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, dict) and errors:
                return "; ".join(
                    f"`{name}`: {' '.join(map(str, msgs))}"[:200]
                    for name, msgs in errors.items()
                )
            if isinstance(body.get("message"), str):
                return body["message"][:200]
    return "no details given"
