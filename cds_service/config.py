"""Configuration: embedded defaults + one YAML file, validated with JSON Schema at start."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_URL = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_FHIR_SERVERS = ["https://launch.smarthealthit.org/v/r4/fhir"]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, path and problem."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration, as a plain mapping plus the file it came from."""

    data: dict[str, Any]
    source: str = "embedded defaults"
    dev_mode: bool = False
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def auth(self) -> dict[str, Any]:
        return self.data["auth"]

    @property
    def fhir(self) -> dict[str, Any]:
        return self.data["fhir"]

    @property
    def cards(self) -> dict[str, Any]:
        return self.data["cards"]

    @property
    def limits(self) -> dict[str, Any]:
        return self.data["limits"]


def shipped_defaults() -> dict[str, Any]:
    """The embedded defaults (defaults.yaml), the one place for each default; a fresh copy."""
    text = resources.files("cds_service").joinpath("defaults.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _schema() -> dict[str, Any]:
    text = resources.files("cds_service").joinpath("config.schema.json").read_text("utf-8")
    return json.loads(text)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into a copy of base (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _path_of(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def validate(data: dict[str, Any], source: str) -> None:
    """Raise ConfigError naming source, the path inside it and what is wrong."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_path_of(e)}: {e.message}" for e in errors[:20]]
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines))


def load(
    path: str | os.PathLike[str] | None = None, *, dev: bool = False, overrides: dict[str, Any] | None = None
) -> Settings:
    """Load defaults, then the file at `path` (or $HER2_CDS_CONFIG), then `overrides`."""
    data = shipped_defaults()
    source = "embedded defaults"
    notes: list[str] = []
    path = path or os.environ.get("HER2_CDS_CONFIG") or None
    if path:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
        try:
            user = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"{source}: (top level): must be a mapping, got {type(user).__name__}")
        data = merge(data, user)
    if dev:
        data = merge(data, _dev_overrides(data))
        notes.append(
            "development mode: trusting the public CDS Hooks sandbox issuer "
            f"{SANDBOX_ISSUER} (its private key is public) and its origin for CORS"
        )
    if overrides:
        data = merge(data, overrides)
    validate(data, source)
    _check_fhir_servers(data["fhir"]["allowed_servers"], source)
    base = Path(source).parent if path else Path.cwd()
    data["value_sets"]["extra_files"] = [
        str(p if Path(p).is_absolute() else base / p) for p in data["value_sets"]["extra_files"]
    ]
    data["storage"]["cache_url"] = data["storage"]["cache_url"] or host_cache_url(data["storage"]["database_url"])
    secret = data["ledger"]["patient_key_secret_file"]
    if secret and not Path(secret).is_absolute():
        data["ledger"]["patient_key_secret_file"] = str(base / secret)
    for index, issuer in enumerate(data["auth"]["issuers"]):
        if "jwks_file" in issuer:
            issuer["jwks"] = _pinned_keys(base / issuer["jwks_file"], f"{source}: auth.issuers[{index}].jwks_file")
    return Settings(data=data, source=source, dev_mode=dev, notes=notes)


def host_cache_url(database_url: str) -> str:
    """The default jti replay cache and repeat memory: a SQLite file every worker of this host shares, beside the
    SQLite database (her2-cds.db -> her2-cds-replay.db), or in the working directory when the database is
    PostgreSQL (whose outage must not stop token checks); in memory beside an in-memory database (one process)."""
    if database_url in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        return "memory://"
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name(path.stem + '-replay.db')}"
    return "sqlite:///her2-cds-replay.db"


def _check_fhir_servers(servers: list[str], source: str) -> None:
    """Every allow-listed FHIR base must be one the fallback would ever call (see gather.fhir_client.normalise)."""
    from cds_service.gather.fhir_client import is_allowed_base

    bad = [s for s in servers if not is_allowed_base(s, [s])]
    if bad:
        raise ConfigError(
            f"{source}: fhir.allowed_servers: {bad[0]!r} is not a plain http(s) base URL (no credentials, query, "
            "fragment, ';', percent-encoded reserved characters, dot or empty segments): no request to it would be made"
        )


def _pinned_keys(path: Path, where: str) -> dict[str, Any]:
    """An issuer's keys from a JWK Set file, checked like inline `jwks`."""
    try:
        keys = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}: {path} is not JSON: {exc}") from exc
    schema = _schema()
    problems = list(
        jsonschema.Draft202012Validator({**schema["$defs"]["jwks"], "$defs": schema["$defs"]}).iter_errors(keys)
    )
    if problems:
        raise ConfigError(f"{where}: {path} is not a JWK Set: {problems[0].message}")
    return keys


def _dev_overrides(data: dict[str, Any]) -> dict[str, Any]:
    issuers = list(data["auth"]["issuers"])
    if not any(i.get("iss") == SANDBOX_ISSUER for i in issuers):
        issuers.append({"iss": SANDBOX_ISSUER, "jwks_url": SANDBOX_JWKS_URL})
    origins = list(data["cors"]["allowed_origins"])
    if SANDBOX_ORIGIN not in origins:
        origins.append(SANDBOX_ORIGIN)
    return {
        "auth": {"issuers": issuers},
        "cors": {"allowed_origins": origins},
        "fhir": {
            "allow_unauthenticated": True,
            "allowed_servers": sorted(set(data["fhir"]["allowed_servers"]) | set(SANDBOX_FHIR_SERVERS)),
        },
    }
