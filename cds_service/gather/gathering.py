"""Data gathering: prefetch first, then parallel FHIR fallback for what the EHR did not send."""

from __future__ import annotations

import re
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

from cds_service.gather.binding import Binding, bind, patient_full_urls
from cds_service.gather.fhir_client import ByteBudget, FetchResult, FhirClient, is_allowed_base, read_payload
from cds_service.gather.templates import PATHOLOGY_KEY, SPECIMEN_KEY, missing_report_results, missing_specimens

# keys an EHR may not support: their absence is said on the cards, never a 412
OPTIONAL_KEYS = {PATHOLOGY_KEY}
_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


class MissingPrefetch(Exception):
    """Required data is neither prefetched nor obtainable: answered with 412."""

    def __init__(self, keys: list[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = keys
        self.reason = reason


@dataclass
class Gathered:
    """Raw FHIR JSON resources by prefetch key, and what could not be had."""

    by_key: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    fallback_calls: int = 0
    fallback_errors: int = 0
    prefetch_alone: bool = True  # nothing was (or had to be) fetched: the prefetch and the templates decided it all
    binding: Binding = field(default_factory=Binding)  # what was left out: not this patient's, or of the wrong type

    def all_resources(self) -> list[dict[str, Any]]:
        return [r for rs in self.by_key.values() for r in rs]


def expand(template: str, context: dict[str, Any]) -> str | None:
    """Fill {{context.x}} tokens; None when a token has no value in this request."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        value = context.get(name.removeprefix("context.")) if name.startswith("context.") else None
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        return quote(value, safe="")

    out = _TOKEN.sub(sub, template)
    return None if missing else out


def _fhir_token(request: dict[str, Any]) -> str | None:
    auth = request.get("fhirAuthorization")
    return auth.get("access_token") if isinstance(auth, dict) else None


def gather(
    request: dict[str, Any], templates: dict[str, str], client: FhirClient, deadline: float, allow_unauthenticated: bool
) -> Gathered:
    """Resolve every prefetch template to a list of resources, fetching what is missing."""
    prefetch = request.get("prefetch") or {}
    server = request.get("fhirServer")
    token = _fhir_token(request)
    usable = (
        isinstance(server, str)
        and is_allowed_base(server, client.allowed)
        and (token is not None or allow_unauthenticated)
    )
    out = Gathered()
    to_fetch: dict[str, str] = {}
    to_continue: dict[str, str] = {}
    for key, template in templates.items():
        value = prefetch.get(key, ...)
        if value is None:
            out.by_key[key] = []
            continue
        if value is not ... and value.get("resourceType") != "OperationOutcome":
            resources, nxt, error = read_payload(value)
            out.by_key[key] = resources
            if error:
                out.unavailable[key] = f"the prefetched value could not be read ({error})"
            if nxt:
                to_continue[key] = nxt
                out.prefetch_alone = False
            continue
        out.prefetch_alone = False  # not prefetched: what it holds depends on the context and the server
        query = expand(template, request.get("context") or {})
        if query is None:
            out.by_key[key] = []
            out.unavailable[key] = "the prefetch template needs a context value the request lacks"
            continue
        to_fetch[key] = query
    if to_fetch and not usable:
        why = (
            "no fhirServer in the request"
            if not isinstance(server, str)
            else "fhirServer is not on this service's allow-list"
            if not is_allowed_base(server, client.allowed)
            else "no fhirAuthorization token for fhirServer"
        )
        if set(to_fetch) - OPTIONAL_KEYS:
            raise MissingPrefetch(sorted(set(to_fetch) - OPTIONAL_KEYS), why)
        for key in to_fetch:  # an EHR without this key (e.g. no DiagnosticReport support): said, not refused
            out.by_key[key] = []
            out.unavailable[key] = f"not prefetched and cannot be fetched ({why})"
        to_fetch = {}
    for key in list(to_continue):
        if not usable:
            out.unavailable[key] = "prefetch was paged and the remaining pages cannot be fetched"
            del to_continue[key]
    base = server.rstrip("/") + "/" if isinstance(server, str) else ""
    budget = ByteBudget(client.bytes_per_request)  # every query of this request draws on one budget
    if to_fetch or to_continue:
        _fetch(out, to_fetch, to_continue, base, client, token, deadline, budget)
    _complete_reports(out, usable, base, client, token, deadline, budget)
    _complete_specimens(out, usable, base, client, token, deadline, budget)
    patient_id = (request.get("context") or {}).get("patientId")
    fetched = set(to_fetch) | set(to_continue) | ({PATHOLOGY_KEY} if not out.prefetch_alone else set())
    _distrust_a_server_that_names_another_patient(out, fetched, patient_id)
    urls = partial(patient_full_urls, list(prefetch.values()), patient_id)  # read only if a urn:uuid needs it
    bind(out.by_key, templates, patient_id, server if isinstance(server, str) else None, urls, out.binding)
    return out


def _distrust_a_server_that_names_another_patient(out: Gathered, fetched: set[str], patient_id: Any) -> None:
    """A Patient read answered with another patient: nothing the server sent for this request is used."""
    answered = (
        [r for r in out.by_key.get("patient", []) if r.get("resourceType") == "Patient"] if "patient" in fetched else []
    )
    if not any(r.get("id") != patient_id for r in answered):
        return
    for key in fetched:
        out.binding.other_patient += len(out.by_key.get(key, []))
        out.by_key[key] = []
        out.unavailable[key] = "the FHIR server answered the Patient read with another patient: nothing it sent is used"


REPORT_RESULTS_PER_QUERY = 40


def _complete_reports(
    out: Gathered, usable: bool, base: str, client: FhirClient, token: str | None, deadline: float, budget: ByteBudget
) -> None:
    """Results that pathology reports reference but that came without them (no `_include` support on
    the server or in the EHR's prefetch): one `Observation?_id=` query per 40 ids, in parallel."""
    missing = missing_report_results(out.by_key)
    if not missing:
        return
    out.prefetch_alone = False
    if not usable:
        out.unavailable[PATHOLOGY_KEY] = (
            f"{len(missing)} result(s) referenced by pathology reports were not delivered and cannot be fetched"
        )
        return
    query = _ByIds(base, client, token, deadline, budget)
    query.fetch(out, PATHOLOGY_KEY, "Observation", missing, "results of pathology reports")


def _complete_specimens(
    out: Gathered, usable: bool, base: str, client: FhirClient, token: str | None, deadline: float, budget: ByteBudget
) -> None:
    """Specimens that HER2 results reference but that came without them: one `Specimen?_id=` query per 40 ids; a
    request that cannot fetch them says so (the card then says "specimen not delivered", not "not recorded")."""
    missing = missing_specimens(out.by_key)
    if not missing:
        return
    if not usable:
        out.unavailable.setdefault(
            SPECIMEN_KEY,
            f"{len(missing)} specimen(s) referenced by results were not delivered and cannot be fetched",
        )
        return
    out.prefetch_alone = False
    _ByIds(base, client, token, deadline, budget).fetch(out, SPECIMEN_KEY, "Specimen", missing, "specimens of results")


@dataclass(frozen=True)
class _ByIds:
    """Resources a server left out of an `_include`, fetched by id: one `Type?_id=` query per 40 ids, in parallel,
    on the request's server, token, deadline and byte budget."""

    base: str
    client: FhirClient
    token: str | None
    deadline: float
    budget: ByteBudget

    def fetch(self, out: Gathered, key: str, rtype: str, ids: list[str], what: str) -> None:
        """Add them under key; a failed query is said as `what: error`."""
        size = REPORT_RESULTS_PER_QUERY
        futures = [
            self.client.submit(
                f"{self.base}{rtype}?_id={','.join(ids[i : i + size])}", self.token, self.deadline, self.base,
                self.budget,
            )
            for i in range(0, len(ids), size)
        ]  # fmt: skip
        for fut in futures:
            res = _collect(out, key, fut, self.deadline)
            if res.error:
                out.unavailable[key] = f"{what}: {res.error}"


def _collect(out: Gathered, key: str, fut: Future[FetchResult], deadline: float) -> FetchResult:
    """Wait for one query until the deadline; add what it brought (and its calls and errors) under key."""
    try:
        res = fut.result(timeout=max(0.0, deadline - time.monotonic()) + 0.05)
    except FutureTimeout:
        res = FetchResult(error="deadline passed")
    out.fallback_calls += res.calls
    out.by_key.setdefault(key, []).extend(res.resources)
    out.fallback_errors += 1 if res.error else 0
    return res


MERGED_URL_LIMIT = 4000  # characters of a merged Observation query; longer ones stay apart
_OBS_BY_CODE = re.compile(r"^Observation\?patient=([^&]+)&code=([^&]+)((?:&_include=[^&]+)*)$")


@dataclass
class MergedQuery:
    """One Observation search serving several keys: each key's code tokens, and the keys that asked for
    `_include`d resources (they get every included resource)."""

    query: str
    codes: dict[str, set[str]]
    includes: set[str]


def merge_observation_queries(to_fetch: dict[str, str]) -> list[MergedQuery]:
    """Observation searches by patient and code (and `_include`), merged into one query per patient
    (`code=a,b,c`): a FHIR server that answers one request at a time then costs one round trip, not four.
    The answer is split locally by each key's codes."""
    groups: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    for key, query in to_fetch.items():
        m = _OBS_BY_CODE.match(query)
        if m:
            includes = [p for p in m.group(3).split("&") if p]
            groups.setdefault(m.group(1), {})[key] = (m.group(2).split(","), includes)
    merged = []
    for patient, keys in groups.items():
        if len(keys) < 2:
            continue
        union = list(dict.fromkeys(t for tokens, _ in keys.values() for t in tokens))
        includes = list(dict.fromkeys(i for _, incs in keys.values() for i in incs))
        query = f"Observation?patient={patient}&code={','.join(union)}" + "".join(f"&{i}" for i in includes)
        if len(query) <= MERGED_URL_LIMIT:
            merged.append(
                MergedQuery(query, {k: set(v[0]) for k, v in keys.items()}, {k for k, v in keys.items() if v[1]})
            )
    return merged


def _tokens(resource: dict[str, Any]) -> set[str]:
    """system|code of each coding of an Observation's code and its components' codes (what `code=` matches)."""
    concepts = [resource.get("code")] + [c.get("code") for c in resource.get("component") or [] if isinstance(c, dict)]
    return {
        f"{c.get('system')}|{c.get('code')}"
        for cc in concepts
        if isinstance(cc, dict)
        for c in cc.get("coding") or []
        if isinstance(c, dict)
    }


def _fetch(
    out: Gathered,
    to_fetch: dict[str, str],
    to_continue: dict[str, str],
    base: str,
    client: FhirClient,
    token: str | None,
    deadline: float,
    budget: ByteBudget,
) -> None:
    """The missing keys and the remaining pages of paged ones, in parallel, within the deadline; Observation
    searches merged into one query (split locally by each key's codes) when client.merge_queries."""
    merged = merge_observation_queries(to_fetch) if client.merge_queries else []
    served = {key for m in merged for key in m.codes}
    futures = {
        key: client.submit(base + query, token, deadline, base, budget)
        for key, query in to_fetch.items()
        if key not in served
    }
    futures.update({key: client.submit(url, token, deadline, base, budget) for key, url in to_continue.items()})
    merged_futures = [(client.submit(base + m.query, token, deadline, base, budget), m) for m in merged]
    for key, fut in futures.items():
        res = _collect(out, key, fut, deadline)
        if res.error:
            out.unavailable[key] = res.error
        elif res.truncated:
            out.unavailable[key] = "more pages than this service follows; later pages not read"
    for fut, m in merged_futures:
        shared = Gathered()
        res = _collect(shared, "merged", fut, deadline)
        out.fallback_calls += shared.fallback_calls
        out.fallback_errors += shared.fallback_errors
        found = shared.by_key.get("merged", [])
        for key, codes in m.codes.items():
            out.by_key[key] = [
                r
                for r in found
                if (_tokens(r) & codes if r.get("resourceType") == "Observation" else key in m.includes)
            ]
            if res.error:
                out.unavailable[key] = res.error
            elif res.truncated:
                out.unavailable[key] = "more pages than this service follows; later pages not read"
