"""The FHIR token never leaves the request's FHIR server (issue 21, item 3).

A URL is checked once, by our reading of it; a server then reads it its own way. The rule under test:
whatever URL the allow-list accepts, every common server reads it as a path under the allowed base, and
the HTTP client connects to the allowed host and port. Servers are modelled by how they map a request
path to a resource path (Tomcat/Spring drop ";params" before resolving dot segments and may decode "%2F";
nginx decodes once and merges slashes; IIS-like servers decode twice, take "\\" for "/" and normalise
Unicode; a plain server resolves dot segments only), then the rule is held over a table of spellings and
over every combination of the pieces those spellings are made of. Black box: hook calls against the test
FHIR server, whose log shows which paths the token reached.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from urllib.parse import unquote, urlsplit

import pytest
from urllib3.util import parse_url

from cds_service.gather.fhir_client import is_allowed, normalise
from cds_service.web.app import create_app

from .helpers import empty_prefetch, hook_request

BASE = "https://ok.example/fhir"
TOKEN = "fhir-access-token-SECRET-42"


def _resolve(segments: list[str]) -> str:
    """RFC 3986 remove_dot_segments over a list of segments."""
    out: list[str] = []
    for seg in segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/" + "/".join(out)


def plain(path: str) -> str:
    return _resolve(path.split("/")[1:])


def tomcat(path: str) -> str:
    """Tomcat/Spring: ";params" dropped from each segment, then decoded (an encoded slash allowed), then resolved."""
    stripped = "/".join(seg.split(";")[0] for seg in path.split("/"))
    return _resolve(unquote(stripped).split("/")[1:])


def nginx(path: str) -> str:
    """nginx: decoded once (%2F too), slashes merged, dot segments resolved."""
    return _resolve(re.sub("/+", "/", unquote(path)).split("/")[1:])


def iis(path: str) -> str:
    """A server that decodes twice, reads overlong UTF-8 dots, takes "\\" for "/" and folds Unicode (NFKC)."""
    decoded = unquote(unquote(re.sub("(?i)%c0%ae", ".", path)))
    folded = unicodedata.normalize("NFKC", decoded).replace("\\", "/")
    return _resolve(re.sub("/+", "/", folded).split("/")[1:])


SERVERS = {"plain": plain, "tomcat": tomcat, "nginx": nginx, "iis": iis}


def _stays_on(url: str, base: str) -> list[str]:
    """The servers (and the client) that would take url outside base: empty when none would."""
    wrong = []
    got, want = parse_url(url), parse_url(base)
    if (got.host, got.port or 443 if got.scheme == "https" else got.port or 80) != (
        want.host,
        want.port or 443 if want.scheme == "https" else want.port or 80,
    ) or got.scheme != want.scheme:
        wrong.append("client connects elsewhere")
    root = urlsplit(base).path.rstrip("/")
    path = urlsplit(url).path or "/"
    for name, read in SERVERS.items():
        try:
            resolved = read(path)
        except ValueError:
            continue
        if not (resolved == root or resolved.startswith(root + "/")):
            wrong.append(f"{name} reads {resolved}")
    return wrong


SPELLINGS = [  # (url, allowed?) against BASE
    (f"{BASE}/..;/admin", False),  # Tomcat and Spring: "/admin"
    (f"{BASE}/Patient/..;/..;/admin", False),
    (f"{BASE};/../admin", False),
    (f"{BASE}/.;/Patient", False),
    (f"{BASE}/..%2Fadmin", False),  # nginx: "/admin/"
    (f"{BASE}/..%2fadmin", False),
    (f"{BASE}/%2e%2e%2Fadmin", False),
    (f"{BASE}/x%2F..%2F..%2Fadmin", False),
    (f"{BASE}/..%5Cadmin", False),
    (f"{BASE}/..%3Badmin", False),
    (f"{BASE}/%252e%252e/admin", False),  # decoded twice
    (f"{BASE}/%c0%ae%c0%ae/admin", False),  # an overlong dot
    (f"{BASE}/%ef%bc%8e%ef%bc%8e/admin", False),  # fullwidth dots, folded by NFKC
    (f"{BASE}/\uff0e\uff0e/admin", False),
    (f"{BASE}//..//admin", False),
    (f"{BASE}/..%00/admin", False),
    (f"{BASE}/Patient/%2e%2e/%2e%2e/admin", False),
    ("https://ok.example/fhirx/Patient", False),
    ("https://ok.example:443@evil.example/fhir/Patient", False),
    ("https://ok.example%2eevil.example/fhir/Patient", False),
    ("https://ok.example.evil.example/fhir/Patient", False),
    ("https://evil.example/fhir/Patient", False),
    ("http://ok.example/fhir/Patient", False),
    (f"{BASE}/Patient/p1", True),
    (f"{BASE}/Patient/a.b-c", True),
    (f"{BASE}/Observation?patient=p1&code=http://loinc.org|48676-1,85319-2", True),
    (f"{BASE}?_getpages=abc&_getpagesoffset=20", True),  # HAPI's next link
    (f"{BASE}/Condition?patient=p1&_offset=3&x=..;/..%2F", True),  # the query is not a path
    ("https://OK.example:443/f%68ir/Patient", False),  # another path to a server that does not decode
    ("https://OK.example:443/fhir/Patient", True),
    (f"{BASE}/", True),
]


@pytest.mark.parametrize("url, allowed", SPELLINGS)
def test_each_spelling_is_read_by_every_server_as_the_allow_list_reads_it(url, allowed):
    assert is_allowed(url, [BASE]) is allowed
    if allowed:
        assert _stays_on(url, BASE) == []


PIECES = [
    "..",
    ".",
    "..;",
    ";x",
    ".;",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "..%2f",
    "%2F..",
    "%5c..",
    "..\\",
    "%252e%252e",
    "%c0%ae%c0%ae",
    "%ef%bc%8e%ef%bc%8e",
    "\uff0e\uff0e",
    "",
    "Patient",
    "a.b",
    "%3b",
    "..%00",
    "%09",
    "%41",
    "~x_",
]


def test_no_combination_of_the_pieces_gets_a_token_out_of_its_base():
    """Every path of up to three of the pieces above, under BASE: the ones the allow-list accepts are read
    under BASE by every server. (The rule, not the examples: 24^3 + 24^2 + 24 = 14,424 paths.)"""
    accepted = 0
    for n in (1, 2, 3):
        for combo in itertools.product(PIECES, repeat=n):
            url = f"{BASE}/" + "/".join(combo) + "/admin"
            if is_allowed(url, [BASE]):
                accepted += 1
                wrong = _stays_on(url, BASE)
                assert not wrong, (url, wrong)
    plain_names = [p for p in PIECES if re.fullmatch(r"[A-Za-z0-9._~-]+", p) and p not in (".", "..")]
    assert accepted == sum(len(plain_names) ** n for n in (1, 2, 3))  # every path of plain names passes


@pytest.mark.parametrize(
    "a, b",
    [
        ("http://[::1:8080]/fhir", "http://[::1]:8080/fhir"),  # another host, not a port
        ("http://[::1]/fhir", "http://[::1]:80/fhir/.."),
        ("http://[fe80::1%25eth0]:8080/fhir", "http://[fe80::1]:8080/fhir"),  # a zone id is refused
    ],
)
def test_ipv6_literals_keep_their_brackets(a, b):
    assert normalise(a) is None or normalise(a) != normalise(b)
    assert not is_allowed(a + "/Patient/1", [b]) or normalise(a) == normalise(b)


def test_ipv6_normal_form():
    assert normalise("http://[::1]:8080/fhir") == "http://[::1]:8080/fhir"
    assert normalise("http://[0:0::1]:80/fhir") == "http://[0:0::1]/fhir"
    assert is_allowed("http://[::1]:8080/fhir/Patient/1", ["http://[::1]:8080/fhir"])
    assert not is_allowed("http://[::1:8080]/fhir/Patient/1", ["http://[::1]:8080/fhir"])


# ---- black box: hook calls, the test FHIR server's log shows where the token went


def _call(app, server: str, prefetch: dict | None = None):
    body = hook_request("patient-view", prefetch=prefetch if prefetch is not None else {}, fhirServer=server)
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "x",
        "subject": "her2-cds",
    }
    return app.test_client().post("/cds-services/her2-patient-view", json=body)


def _app(settings_factory, allowed):
    return create_app(settings_factory(fhir={"allowed_servers": allowed, "timeout_seconds": 1}))


@pytest.mark.parametrize("suffix", ["/..;/admin", "/..%2Fadmin", "/%2e%2e;/admin", "/x/..%2F..%2Fadmin", "//admin"])
def test_a_fhir_server_spelled_to_escape_is_never_called(settings_factory, fhir_server, suffix):
    fhir_server.reset([{"resourceType": "Patient", "id": "p1"}])
    app = _app(settings_factory, [f"{fhir_server.base}/tenant-a"])
    resp = _call(app, f"{fhir_server.base}/tenant-a{suffix}")
    assert resp.status_code == 412, resp.get_json()
    assert fhir_server.log() == []


PATIENT = {"resourceType": "Patient", "id": "p1"}


def _conditions(n: int) -> list[dict]:
    return [
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
        }
        for i in range(n)
    ]


def test_a_next_link_to_another_tenant_of_the_same_host_is_not_followed(settings_factory, fhir_server):
    """Two tenants of one FHIR host, both on the allow-list: a page of tenant A's answer never takes A's
    token to tenant B."""
    patient, conditions = PATIENT, _conditions(5)
    fhir_server.reset([patient, *conditions], page_size=2, next="sibling")
    app = _app(settings_factory, [f"{fhir_server.base}/tenant-a", f"{fhir_server.base}/tenant-other"])
    prefetch = {k: v for k, v in empty_prefetch().items() if k != "conditions"}
    prefetch["patient"] = patient
    resp = _call(app, f"{fhir_server.base}/tenant-a", prefetch)
    assert resp.status_code == 200
    paths = [e["path"] for e in fhir_server.log()]
    assert paths and all(p.startswith("/tenant-a/") for p in paths), paths


def test_pages_under_the_same_tenant_are_followed(settings_factory, fhir_server):
    patient, conditions = PATIENT, _conditions(5)
    fhir_server.reset([patient, *conditions], page_size=2)
    app = _app(settings_factory, [f"{fhir_server.base}/tenant-a"])
    prefetch = {k: v for k, v in empty_prefetch().items() if k != "conditions"}
    prefetch["patient"] = patient
    assert _call(app, f"{fhir_server.base}/tenant-a", prefetch).status_code == 200
    condition_pages = [e["path"] for e in fhir_server.log() if e["path"].startswith("/tenant-a/Condition")]
    assert len(condition_pages) == 3


@pytest.mark.parametrize(
    "bad", ["https://ok.example/fhir;x", "https://ok.example/fhir?x=1", "https://ok.example/a/../fhir"]
)
def test_an_allow_list_entry_no_request_could_use_is_a_config_error(bad):
    from cds_service.config import ConfigError, load

    with pytest.raises(ConfigError, match="fhir.allowed_servers"):
        load(overrides={"fhir": {"allowed_servers": [bad]}})


def test_only_fhir_ids_from_a_report_go_into_a_query():
    from cds_service.gather.templates import PATHOLOGY_KEY, missing_report_results

    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "result": [
            {"reference": "Observation/ok-1.2"},
            {"reference": "Observation/x&patient=other"},
            {"reference": "Observation/y#frag"},
            {"reference": "Observation/" + "z" * 65},
        ],
    }
    assert missing_report_results({PATHOLOGY_KEY: [report]}) == ["ok-1.2"]
