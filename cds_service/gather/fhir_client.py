"""A small FHIR REST client for fallback queries: allow-listed servers only, bounded in time and pages."""

from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

MAX_RESPONSE_BYTES = 50_000_000
# urllib3 logs every request URL at DEBUG, and our search URLs carry the patient id: keep it quiet.
logging.getLogger("urllib3").setLevel(logging.WARNING)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_AMBIGUOUS = re.compile(r"[^\x21-\x7e]|\\")  # anything but printable ASCII, and the backslash


def normalise(url: str) -> str | None:
    """The URL in normal form (scheme and host in lower case, IPv6 literals in brackets, no default port),
    without query or fragment; None for anything a common server could read as another path than the
    plain one:

    - not http(s), credentials, a fragment, a "%" in the authority;
    - white space, control or non-ASCII characters, a backslash (parsers disagree on them);
    - a ";" in the path (Tomcat and Spring drop ";params" from a segment before resolving dot
      segments: "/fhir/..;/admin" is "/admin" to them);
    - any percent-encoding in the path: servers differ on which they decode and how often
      ("/fhir/..%2Fadmin" is "/admin/" to nginx, "%252e%252e" a dot segment to a server that decodes
      twice, "%c0%ae" an overlong dot to an old one, "/f%68ir" another path to one that does not
      decode); a FHIR URL's path never needs one (ids are [A-Za-z0-9.-]);
    - a dot segment ("/../", "/./") or an empty one ("//": nginx merges slashes)."""
    if _AMBIGUOUS.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    path = parts.path
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or "#" in url
        or "%" in parts.netloc
        or ";" in path
        or "%" in path
        or "//" in path
        or any(seg in (".", "..") for seg in path.split("/"))
    ):
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets: "[::1:8080]" is not "[::1]:8080"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}"


def read_body(
    resp: requests.Response, deadline: float, max_bytes: int, budget: ByteBudget | None = None
) -> tuple[bytes, str | None]:
    """A streamed response's body, bounded in wall-clock time and size: (body, None) or (b"", reason).
    The read timeout of `requests` is per socket read, so a peer that trickles bytes would hold the
    thread past the deadline: at the deadline the socket is shut down, whatever the read is doing."""
    cut = threading.Timer(max(0.0, deadline - time.monotonic()), _shut_down, (resp,))
    cut.daemon = True
    cut.start()
    try:
        body = bytearray()
        for chunk in resp.iter_content(65536):
            body.extend(chunk)
            if len(body) > max_bytes:
                return b"", "response too large"
            if budget is not None and not budget.take(len(chunk)):
                return b"", "this request's FHIR byte budget is spent"
            if time.monotonic() > deadline:
                return b"", "deadline passed"
    finally:
        cut.cancel()
    if time.monotonic() > deadline:
        return b"", "deadline passed"  # nothing is parsed after the deadline
    return bytes(body), None


def _shut_down(resp: requests.Response) -> None:
    """End a response's socket from another thread: a blocked read returns at once."""
    sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def is_allowed(url: str, allowed: list[str]) -> bool:
    """True when url, normalised, lies under one of the allowed server prefixes (path-boundary aware)."""
    target = normalise(url)
    if target is None:
        return False
    target = target.rstrip("/") + "/"
    prefixes = (normalise(a) for a in allowed)
    return any(p is not None and target.startswith(p.rstrip("/") + "/") for p in prefixes)


def is_allowed_base(server: str, allowed: list[str]) -> bool:
    """True when a request's fhirServer may be called: allowed, and a bare base (no query a search would
    be appended to)."""
    return "?" not in server and is_allowed(server, allowed)


class ByteBudget:
    """The bytes one hook request may read from FHIR servers, shared by its parallel queries."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Spend n bytes; False once the budget is exceeded (and from then on)."""
        with self._lock:
            self._left -= n
            return self._left >= 0


@dataclass
class FetchResult:
    """What one fallback query produced."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    calls: int = 0
    truncated: bool = False


class FhirClient:
    """GET searches and reads against an allow-listed FHIR server; never raises on I/O."""

    def __init__(
        self,
        allowed_servers: list[str],
        timeout: float,
        max_pages: int,
        bytes_per_request: int = 20_000_000,
        per_server: int = 32,
        merge_queries: bool = True,
    ) -> None:
        self.allowed = list(allowed_servers)
        self.merge_queries = merge_queries  # Observation searches by code merged into one (gathering.py)
        self.timeout = timeout
        self.max_pages = max_pages
        self.bytes_per_request = bytes_per_request
        self._per_server = per_server
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()
        self._local = threading.local()

    def submit(
        self, url: str, token: str | None, deadline: float, origin: str, budget: ByteBudget | None = None
    ) -> Future[FetchResult]:
        """Run a search on the server's own thread pool: a slow server queues its own queries and never
        takes the threads another server's queries need. A query that waited past the deadline returns
        at once without a request."""
        host = urlsplit(origin).netloc.lower()
        with self._pools_lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = self._pools[host] = ThreadPoolExecutor(
                    max_workers=self._per_server, thread_name_prefix=f"fhir-{len(self._pools)}"
                )
        return pool.submit(self.search, url, token, deadline, origin, budget)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            # no cookies: a cookie one user's query received must never ride along on another's
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            self._local.session = session
        return session

    def get_json(
        self, url: str, token: str | None, deadline: float, budget: ByteBudget | None = None
    ) -> tuple[Any, str | None]:
        """One GET; (parsed JSON, None) or (None, reason). The reason never holds the token."""
        if not is_allowed(url, self.allowed):
            return None, "server not on the allow-list"
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            return None, "deadline passed"
        headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        t = min(self.timeout, remaining)
        try:
            with self._session().get(url, headers=headers, timeout=(t, t), stream=True, allow_redirects=False) as resp:
                if resp.status_code != 200:
                    return None, f"HTTP {resp.status_code}"
                body, error = read_body(resp, deadline, MAX_RESPONSE_BYTES, budget)
                if error:
                    return None, error
        except requests.Timeout:
            return None, "timed out"
        except requests.RequestException as exc:
            if time.monotonic() > deadline:
                return None, "deadline passed"
            return None, f"unreachable ({type(exc).__name__})"
        except (UnicodeError, ValueError) as exc:  # a URL or header that cannot be sent: never a 500
            return None, f"request not sendable ({type(exc).__name__})"
        try:
            return json.loads(body), None
        except (ValueError, UnicodeDecodeError):
            return None, "response is not JSON"

    def search(
        self, url: str, token: str | None, deadline: float, origin: str | None = None, budget: ByteBudget | None = None
    ) -> FetchResult:
        """Fetch url and follow Bundle `next` links on the same server, up to max_pages."""
        result = FetchResult()
        seen: set[str] = set()
        next_url: str | None = url
        server = origin or url
        while next_url:
            if next_url in seen:
                break
            if result.calls >= self.max_pages:
                result.truncated = True
                break
            if not is_allowed(next_url, [server]):  # a page of this search never leaves the request's own server
                result.error = "a next link pointed outside the request's FHIR server; not followed"
                break
            seen.add(next_url)
            data, error = self.get_json(next_url, token, deadline, budget)
            result.calls += 1
            if error:
                result.error = error
                break
            resources, next_url, error = read_payload(data)
            if error:
                result.error = error
                break
            # every copy of an id is kept (a page overlap, an amendment on a later page): the status policy weighs
            # them all (fhir/extraction._dedupe), so an amended result on page 2 is not lost to page 1's original
            result.resources.extend(resources)
        return result


def read_payload(data: Any) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """(resources, next link, error) of a FHIR JSON payload: a Bundle, one resource or an error."""
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        return [], None, "not a FHIR resource"
    if data["resourceType"] == "OperationOutcome":
        return [], None, "server answered with an OperationOutcome"
    if data["resourceType"] != "Bundle":
        return [data], None, None
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        return [], None, "Bundle.entry is not a list"
    resources = [  # exact types: what a JSON parser gives (one lookup per entry fewer than isinstance + index)
        r
        for e in entries
        if type(e) is dict and type(r := e.get("resource")) is dict and type(r.get("resourceType")) is str
    ]
    return resources, next_link(data), None


def next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
