"""Offline evaluation: the cards the service would return for a request file, via the HTTP code path."""

from __future__ import annotations

import json
import secrets
from hashlib import sha256
from pathlib import Path
from typing import Any

from cds_service import contracts
from cds_service.config import Settings
from cds_service.explain import render as render_explanation
from cds_service.web.app import create_app

SERVICE_BY_HOOK = {svc["hook"]: sid for sid, svc in contracts.services().items()}


def evaluate_file(
    path: str, settings: Settings, service_id: str | None = None, explain: bool = False
) -> tuple[int, dict[str, Any]]:
    """POST the request in `path` to the app in-process (no network); (status, JSON body). With explain, through
    the operator's explain route (a one-time operator token), so the body also holds `explanation`."""
    try:
        raw = Path(path).read_bytes()
        hook = json.loads(raw).get("hook")
    except (OSError, ValueError, AttributeError) as exc:
        return 400, {"error": f"{path}: cannot read a JSON hook request ({exc})"}
    service_id = service_id or SERVICE_BY_HOOK.get(hook, "")
    headers = {}
    if explain:
        token = secrets.token_urlsafe(24)
        operator = {"explain_token_sha256": sha256(token.encode()).hexdigest()}
        settings = Settings(
            data={**settings.data, "operator": operator},
            source=settings.source,
            dev_mode=settings.dev_mode,
            notes=settings.notes,
        )
        headers["X-HER2-CDS-Operator"] = token
    client = create_app(settings).test_client()
    route = f"/cds-services/{service_id}" + ("/explain" if explain else "")
    resp = client.post(route, data=raw, content_type="application/json", headers=headers)
    return resp.status_code, resp.get_json()


def render_text(status: int, body: dict[str, Any]) -> str:
    """A readable form of a response for informatics teams."""
    if status != 200:
        return f"HTTP {status}: {json.dumps(body, indent=2)}"
    cards = body.get("cards", [])
    out = [] if cards else ["No cards." + ("" if "explanation" in body else " (her2-cds evaluate --explain tells why)")]
    for i, card in enumerate(cards, 1):
        out.append(f"[{i}] {card['indicator'].upper()} · {card['source']['topic']['code']}\n    {card['summary']}")
        if card.get("detail"):
            out.append("\n".join("    " + line for line in card["detail"].splitlines()))
        for s in card.get("suggestions", []):
            rec = " (recommended)" if s.get("isRecommended") else ""
            out.append(f"    → suggestion: {s['label']}{rec}")
        for link in card.get("links", []):
            out.append(f"    ↗ {link['label']}: {link['url']}")
    if "explanation" in body:
        out += ["", render_explanation(body["explanation"])]
    return "\n".join(out)
