"""Configuration: embedded defaults + one YAML file, validated with JSON Schema at start."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import jsonschema
import yaml

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_URL = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_FHIR_SERVERS = ["https://launch.smarthealthit.org/v/r4/fhir"]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, path and problem."""


Mode = Literal["live", "shadow", "off"]


@dataclass(frozen=True)
class AuthSettings:
    required: bool
    algorithms: tuple[str, ...]
    leeway_seconds: int
    max_token_lifetime_seconds: int
    issuers: tuple[Mapping[str, Any], ...]  # each as the schema checked it (iss, jwks_url | jwks | jwks_file, ...)


@dataclass(frozen=True)
class FhirSettings:
    allowed_servers: tuple[str, ...]
    timeout_seconds: float
    max_pages: int
    max_bytes_per_request: int
    max_workers: int
    allow_unauthenticated: bool
    merge_observation_queries: bool


@dataclass(frozen=True)
class StorageSettings:
    database_url: str
    cache_url: str
    memory_cache_max_entries: int


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    request_deadline_seconds: float
    facts_memo_mb: int
    facts_memo_seconds: float


@dataclass(frozen=True)
class TopicSettings:
    """One card topic's settings: whether and how it runs, and the rule's own options (its thresholds)."""

    enabled: bool
    mode: Mode
    options: Mapping[str, Any]  # every key of cards.<topic> (enabled and mode included), read-only

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> TopicSettings:
        mode = raw.get("mode", "live")
        return cls(bool(raw.get("enabled", False)), mode if mode in ("live", "shadow", "off") else "live",
                   MappingProxyType(dict(raw)))  # fmt: skip

    @property
    def runs(self) -> Mode:
        """live | shadow | off (`enabled: false` is off)."""
        return "off" if not self.enabled else self.mode


@dataclass(frozen=True)
class CardSettings:
    topics: Mapping[str, TopicSettings]  # by config key (cards.her2_rescore, ...)
    repeat_window_minutes: int
    source_label: str
    texts: Mapping[str, str]
    links: Mapping[str, str]
    snooze: Mapping[str, Mapping[str, Any]]

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> CardSettings:
        """From the `cards` section (validated; tests pass the shipped defaults)."""
        plain = {"repeat_window_minutes", "source_label", "texts", "links", "snooze"}
        return cls(
            MappingProxyType(
                {k: TopicSettings.of(v) for k, v in raw.items() if k not in plain and isinstance(v, dict)}
            ),
            int(raw["repeat_window_minutes"]),
            str(raw["source_label"]),
            MappingProxyType(dict(raw["texts"])),
            MappingProxyType(dict(raw["links"])),
            MappingProxyType({k: MappingProxyType(dict(v)) for k, v in raw["snooze"].items()}),
        )


@dataclass(frozen=True)
class LedgerSettings:
    enabled: bool
    patient_key_secret_file: str | None
    retention_days: int


@dataclass(frozen=True)
class Settings:
    """The validated configuration, typed and frozen, built once when it loads; `data` is the mapping it was built
    from (what `evaluate --explain` extends)."""

    data: dict[str, Any]
    source: str = "embedded defaults"
    dev_mode: bool = False
    notes: list[str] = field(default_factory=list)
    auth: AuthSettings = field(init=False)
    fhir: FhirSettings = field(init=False)
    storage: StorageSettings = field(init=False)
    limits: Limits = field(init=False)
    cards: CardSettings = field(init=False)
    ledger: LedgerSettings = field(init=False)
    public_base_url: str | None = field(init=False)
    cors_origins: frozenset[str] = field(init=False)
    value_set_files: tuple[str, ...] = field(init=False)
    log_level: str = field(init=False)
    explain_token_sha256: str | None = field(init=False)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as what it was built from (the population sweep sends it to worker processes)."""
        return (Settings, (self.data, self.source, self.dev_mode, list(self.notes)))

    def __post_init__(self) -> None:
        d = self.data
        auth, fhir, storage, limits, ledger = d["auth"], d["fhir"], d["storage"], d["limits"], d["ledger"]
        typed: dict[str, Any] = {
            "auth": AuthSettings(
                bool(auth["required"]),
                tuple(auth["algorithms"]),
                int(auth["leeway_seconds"]),
                int(auth["max_token_lifetime_seconds"]),
                tuple(MappingProxyType(dict(i)) for i in auth["issuers"]),
            ),
            "fhir": FhirSettings(
                tuple(fhir["allowed_servers"]),
                float(fhir["timeout_seconds"]),
                int(fhir["max_pages"]),
                int(fhir["max_bytes_per_request"]),
                int(fhir["max_workers"]),
                bool(fhir["allow_unauthenticated"]),
                bool(fhir["merge_observation_queries"]),
            ),
            "storage": StorageSettings(
                str(storage["database_url"]),
                str(storage["cache_url"] or host_cache_url(storage["database_url"])),
                int(storage["memory_cache_max_entries"]),
            ),
            "limits": Limits(
                int(limits["max_body_bytes"]),
                float(limits["request_deadline_seconds"]),
                int(limits["facts_memo_mb"]),
                float(limits["facts_memo_seconds"]),
            ),
            "cards": CardSettings.of(d["cards"]),
            "ledger": LedgerSettings(
                bool(ledger["enabled"]), ledger["patient_key_secret_file"], int(ledger["retention_days"])
            ),
            "public_base_url": d["public_base_url"],
            "cors_origins": frozenset(d["cors"]["allowed_origins"]),
            "value_set_files": tuple(d["value_sets"]["extra_files"]),
            "log_level": str(d["logging"]["level"]),
            "explain_token_sha256": d["operator"]["explain_token_sha256"],
        }
        for name, value in typed.items():
            object.__setattr__(self, name, value)


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
        data["ledger"]["patient_key_secret_file"] = secret = str(base / secret)
    if secret:
        _check_secret_file(Path(secret), f"{source}: ledger.patient_key_secret_file")
    for index, issuer in enumerate(data["auth"]["issuers"]):
        if "jwks_file" in issuer:
            issuer["jwks"] = _pinned_keys(base / issuer["jwks_file"], f"{source}: auth.issuers[{index}].jwks_file")
    return Settings(data=data, source=source, dev_mode=dev, notes=notes)


MIN_SECRET_BYTES = 16


def _check_secret_file(path: Path, where: str) -> None:
    """The patient-hash key file opens and holds a key (its content is never printed)."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where}: {path} holds {len(key)} bytes; a key needs at least {MIN_SECRET_BYTES} "
            "(e.g. `openssl rand -hex 32 > FILE`)"
        )


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
