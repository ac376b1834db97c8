"""What the service tells its operator at start, the same on every way of starting it (`serve`, gunicorn with
`cds_service.wsgi:app`, the Docker image): what it uses, whom it trusts, what is unsafe; and what makes a start
refuse (a configuration mistake, always; in production, what would make the service useless or unsafe)."""

from __future__ import annotations

import difflib
import logging
import re

from cds_service.config import Settings
from cds_service.fhir.override_reasons import by_any_code
from cds_service.fhir.terminology import Terminology, load_terminology

ANNOUNCED = "HER2_CDS_ANNOUNCED"  # set by gunicorn's master once it has said what start says (workers inherit it)


def _redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):([^@]+)@", r"//\1:***@", url)


def banner(settings: Settings) -> list[tuple[str, str]]:
    """(level, message) lines describing the running configuration."""
    s = settings
    lines = [
        ("INFO", f"configuration: {s.source}"),
        ("INFO", f"feedback database: {_redact_url(s.storage.database_url)}"),
        ("INFO", f"jti replay cache: {_redact_url(s.storage.cache_url)}"),
    ]
    issuers = [f"{i['iss']} (keys {'pinned' if 'jwks' in i else 'from ' + i['jwks_url']})" for i in s.auth.issuers]
    if not s.auth.required:
        lines.append(
            (
                "WARNING",
                "!!! AUTHENTICATION IS OFF: any caller can invoke this service. "
                "Local development only; never expose this instance. !!!",
            )
        )
    elif issuers:
        lines.append(("INFO", "trusted CDS clients (iss): " + ", ".join(issuers)))
    else:
        lines.append(
            (
                "WARNING",
                "authentication is on and no CDS client is trusted yet: every "
                "call will be refused with 401 until auth.issuers is configured",
            )
        )
    for note in s.notes:
        lines.append(("WARNING", "!!! " + note + " !!!"))
    if s.fhir.allowed_servers:
        lines.append(("INFO", "FHIR fallback allowed to: " + ", ".join(s.fhir.allowed_servers)))
    else:
        lines.append(("INFO", "no FHIR server allowed: requests must carry their prefetch (else 412)"))
    if s.ledger.enabled and not s.ledger.patient_key_secret_file:
        lines.append(
            (
                "WARNING",
                "card ledger: no ledger.patient_key_secret_file; patient hashes use a random key "
                "kept in the database (set a secret file in production)",
            )
        )
    if not s.public_base_url:
        lines.append(
            (
                "WARNING",
                "!!! public_base_url is not set: the JWT audience is taken from each request's Host header, which "
                "the caller chooses; development only (a production start refuses it) !!!",
            )
        )
    return lines


def refusal_to_serve(settings: Settings) -> str | None:
    """Why a production start (gunicorn: the Docker image, `serve --workers N`) must not run, or None. Development
    modes (`--dev`, HER2_CDS_DEV=1, authentication off) may guess the public URL and trust nobody, loudly
    (banner)."""
    if settings.dev_mode or not settings.auth.required:
        return None
    if not settings.public_base_url:
        return (
            "public_base_url is not set: every token's audience would be taken from the Host header the caller "
            "chooses. Set public_base_url to the URL EHRs call (e.g. https://cds.example.org), or start in "
            "development mode (--dev, HER2_CDS_DEV=1)"
        )
    if not settings.auth.issuers:
        return (
            "auth.issuers is empty: no CDS client is trusted, so every call would be refused with 401. Add the "
            "issuer (iss) and keys of each EHR that calls this service (docs/integration.md), or start in "
            "development mode (--dev, HER2_CDS_DEV=1)"
        )
    return None


def problems(settings: Settings, ts: Terminology) -> list[str]:
    """Configuration mistakes that pass the schema and need the loaded value sets to see: each is a refusal."""
    offered = list(by_any_code(ts))  # ours, and the HL7 code a card offers for each
    out = []
    for code in settings.cards.snooze:
        if code not in offered:
            close = difflib.get_close_matches(code, offered, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            out.append(
                f"cards.snooze.{code}: no card offers this override reason, so the rule would never fire; "
                f"{hint}the cards offer {', '.join(offered)}"
            )
    return out


def start(settings: Settings, production: bool, log: logging.Logger | None = None) -> str | None:
    """What every start says (the banner, each local value set), then why it must not run, or None: a
    configuration mistake in any mode; in a production start (gunicorn, `serve --workers N`), refusal_to_serve.
    Loading the value sets raises ConfigError for a bad local file."""
    log = log or logging.getLogger("her2_cds")
    for level, line in banner(settings):
        log.log(getattr(logging, level), line)
    ts = load_terminology(settings.value_set_files)
    for extra in ts.extras:
        log.info("local value set %s adds %d codes or terms to %s", extra.path, extra.added, extra.value_set)
    mistakes = problems(settings, ts)
    if mistakes:
        return "invalid configuration: " + "; ".join(mistakes)
    return refusal_to_serve(settings) if production else None
