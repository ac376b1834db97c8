"""Offline evaluation: the cards the service would return for a request file, via the HTTP code path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import contracts
from .app import create_app
from .config import Settings

SERVICE_BY_HOOK = {svc["hook"]: sid for sid, svc in contracts.services().items()}


def evaluate_file(path: str, settings: Settings, service_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST the request in `path` to the app in-process (no network); (status, JSON body)."""
    try:
        raw = Path(path).read_bytes()
        hook = json.loads(raw).get("hook")
    except (OSError, ValueError, AttributeError) as exc:
        return 400, {"error": f"{path}: cannot read a JSON hook request ({exc})"}
    service_id = service_id or SERVICE_BY_HOOK.get(hook, "")
    client = create_app(settings).test_client()
    resp = client.post(f"/cds-services/{service_id}", data=raw, content_type="application/json")
    return resp.status_code, resp.get_json()


def render_text(status: int, body: dict[str, Any]) -> str:
    """A readable form of a response for informatics teams."""
    if status != 200:
        return f"HTTP {status}: {json.dumps(body, indent=2)}"
    cards = body.get("cards", [])
    if not cards:
        return "No cards."
    out = []
    for i, card in enumerate(cards, 1):
        out.append(f"[{i}] {card['indicator'].upper()} · {card['source']['topic']['code']}\n    {card['summary']}")
        if card.get("detail"):
            out.append("\n".join("    " + line for line in card["detail"].splitlines()))
        for s in card.get("suggestions", []):
            rec = " (recommended)" if s.get("isRecommended") else ""
            out.append(f"    → suggestion: {s['label']}{rec}")
        for link in card.get("links", []):
            out.append(f"    ↗ {link['label']}: {link['url']}")
    return "\n".join(out)
