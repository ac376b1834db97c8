"""What the service tells its operator at start: what it uses, whom it trusts, what is unsafe."""

from __future__ import annotations

import re

from cds_service.config import Settings


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
    modes (`--dev`, HER2_CDS_DEV=1, authentication off) may guess the public URL, loudly (banner)."""
    if settings.dev_mode or not settings.auth.required or settings.public_base_url:
        return None
    return (
        "public_base_url is not set: every token's audience would be taken from the Host header the caller "
        "chooses. Set public_base_url to the URL EHRs call (e.g. https://cds.example.org), or start in "
        "development mode (--dev, HER2_CDS_DEV=1)"
    )
