"""The app factory: wiring only. State is built in web/state.py, routes live on the Blueprint in web/routes.py,
authentication is the Blueprint's gate (web/auth.py); process-wide tuning (gc.freeze) is the server entry
points' (wsgi.py, `her2-cds serve`)."""

from __future__ import annotations

import logging

from flask import Flask

from cds_service import contracts
from cds_service.config import Settings
from cds_service.config import load as load_config
from cds_service.rules.registry import TOPICS, Topic
from cds_service.web import audit, errors
from cds_service.web.routes import bp
from cds_service.web.state import EXTENSION, app_state, build_state


def create_app(settings: Settings | None = None, topics: tuple[Topic, ...] = TOPICS) -> Flask:
    """Build the app from settings (default: embedded defaults + $HER2_CDS_CONFIG) and the card topics of the
    registry."""
    settings = settings or load_config()
    contracts.load_all()  # every schema loaded and checked at start, not on first use
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.extensions[EXTENSION] = build_state(settings, topics)
    app.before_request(audit.start)
    app.after_request(audit.finish)
    app.register_blueprint(bp)
    errors.register(app)
    return app


def serving_app(settings: Settings | None = None) -> Flask:
    """The app as a server process runs it: built, then warmed (after gunicorn's fork, in each worker: every shipped
    example through the engine, the token verifier's keys and signature code, the metric series), so that no real
    request pays for cold caches. The caller freezes the collector."""
    app = create_app(settings)
    state = app_state(app)
    seconds = state.engine.warm()
    state.verifier.warm()
    state.metrics.prepare(state.services)
    logging.getLogger("her2_cds").info("warmed up in %.0f ms", seconds * 1000)
    return app
