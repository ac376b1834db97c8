"""JWT verification of calls from CDS clients (CDS Hooks 2.0 §Trusting CDS Clients)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jwt
import orjson
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.config import AuthSettings
from cds_service.gather.fhir_client import read_body
from cds_service.storage.first_use import CacheForgot, FirstUseMemory

FORBIDDEN_ALGS = {"none", "HS256", "HS384", "HS512"}
JWKS_REFETCH_SECONDS = 30
JWKS_MAX_AGE_SECONDS = 3600
JWKS_DEADLINE_SECONDS = 2.0  # one fetch, wall clock
JWKS_MAX_BYTES = 1_000_000
JWKS_BACKOFF_START_SECONDS = 1.0
JWKS_BACKOFF_MAX_SECONDS = 60.0


_JWT_ERRORS = {name for name in dir(jwt.exceptions) if name.endswith("Error")}
# The metric label of a refusal: one of a fixed set, whatever the caller put in its token.
REASON_LABELS = (
    "missing Authorization header",
    "Authorization is not a Bearer token",
    "malformed token",
    "algorithm not allowed",
    "untrusted issuer",
    "jku is not the issuer's configured JWKS URL",
    "cannot fetch JWKS",
    "jwks_url did not return a JWK Set",
    "unknown kid",
    "unusable key",
    "token has no kid and the issuer has several keys",
    "issued in the future",
    "token lifetime too long",
    "exp or iat is not a number",
    "jti is not a string",
    "issued before the replay cache started",
    "replayed jti",
)


class AuthError(Exception):
    """Why a token was refused; for logs and metrics only, never sent to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def label(self) -> str:
        """The reason as a metric label from a fixed set (PyJWT's own errors by class name, else 'other')."""
        known = next((r for r in REASON_LABELS if self.reason.startswith(r)), None)
        if known:
            return known
        return self.reason if self.reason in _JWT_ERRORS else "other"


@dataclass
class _UrlState:
    """One JWKS URL: one fetch in flight, and the back-off after a failure."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    failed_until: float = 0.0
    backoff: float = 0.0


class KeySets:
    """Per-issuer JWKS: inline, or fetched from the configured URL and cached. A slow or failing key
    server delays only its own issuer: one fetch per URL at a time, a wall-clock deadline and a size
    cap per fetch, back-off after a failure, and a stale set refreshed in the background."""

    def __init__(self, issuers: list[dict[str, Any]], timeout: float = JWKS_DEADLINE_SECONDS) -> None:
        self._issuers = {i["iss"]: i for i in issuers}
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._states: dict[str, _UrlState] = {}
        self._lock = threading.Lock()
        self._timeout = timeout

    def issuer(self, iss: str) -> dict[str, Any] | None:
        return self._issuers.get(iss)

    def pinned(self) -> list[dict[str, Any]]:
        """The keys configured inline (never fetched)."""
        return [
            k
            for i in self._issuers.values()
            if isinstance(i.get("jwks"), dict)
            for k in i["jwks"].get("keys", [])
            if isinstance(k, dict)
        ]

    def _state(self, url: str) -> _UrlState:
        with self._lock:
            return self._states.setdefault(url, _UrlState())

    def _fetch(self, url: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        with requests.get(url, timeout=(self._timeout, self._timeout), stream=True, allow_redirects=False) as resp:
            resp.raise_for_status()
            body, error = read_body(resp, deadline, JWKS_MAX_BYTES)
        if error:
            raise ValueError(error)
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK Set")
        return data

    def _fetch_once(self, url: str, state: _UrlState, known: tuple[float, dict[str, Any]] | None) -> dict[str, Any]:
        """Fetch under the URL's lock (held by the caller); record success or back off."""
        newer = self._cache.get(url)
        if newer is not None and newer is not known:
            return newer[1]  # another request fetched it while this one waited
        if time.monotonic() < state.failed_until:
            raise ValueError("backing off after a failed fetch")
        try:
            data = self._fetch(url)
        except (requests.RequestException, ValueError) as exc:
            state.backoff = min(max(state.backoff * 2, JWKS_BACKOFF_START_SECONDS), JWKS_BACKOFF_MAX_SECONDS)
            state.failed_until = time.monotonic() + state.backoff
            raise ValueError(type(exc).__name__) from exc
        state.backoff, state.failed_until = 0.0, 0.0
        with self._lock:
            self._cache[url] = (time.monotonic(), data)
        return data

    def _refresh_in_background(self, url: str, state: _UrlState, known: tuple[float, dict[str, Any]]) -> None:
        if not state.lock.acquire(blocking=False):
            return  # a fetch is already in flight

        def run() -> None:
            try:
                self._fetch_once(url, state, known)
            except ValueError:
                pass  # the cached set keeps serving; the failure is backed off
            finally:
                state.lock.release()

        threading.Thread(target=run, name="jwks-refresh", daemon=True).start()

    def _jwks(self, issuer: dict[str, Any], refresh: bool) -> dict[str, Any]:
        if "jwks" in issuer:
            return issuer["jwks"]
        url = issuer["jwks_url"]
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
        state = self._state(url)
        may_refetch = not cached or now - cached[0] > JWKS_REFETCH_SECONDS
        if cached and not (refresh and may_refetch):
            if now - cached[0] >= JWKS_MAX_AGE_SECONDS:
                self._refresh_in_background(url, state, cached)
            return cached[1]
        if cached and now < state.failed_until:
            return cached[1]
        if not state.lock.acquire(timeout=self._timeout):  # one fetch at a time; wait at most one deadline
            if cached:
                return cached[1]
            raise AuthError("cannot fetch JWKS (another fetch is still in progress)")
        try:
            return self._fetch_once(url, state, cached)
        except ValueError as exc:
            if cached:
                return cached[1]
            raise AuthError(f"cannot fetch JWKS ({exc})") from exc
        finally:
            state.lock.release()

    def key_for(self, issuer: dict[str, Any], kid: str | None, alg: str) -> Any:
        """The verification key for kid, re-fetching the issuer's set once when kid is unknown."""
        for refresh in (False, True):
            keys = [k for k in self._jwks(issuer, refresh).get("keys", []) if isinstance(k, dict)]
            if kid is not None:
                keys = [k for k in keys if k.get("kid") == kid]
            elif len(keys) != 1:
                raise AuthError("token has no kid and the issuer has several keys")
            if keys:
                try:
                    return _key_object(json.dumps(keys[0], sort_keys=True), alg)
                except (jwt.PyJWTError, TypeError, ValueError) as exc:
                    raise AuthError(f"unusable key ({type(exc).__name__})") from exc
            if "jwks" in issuer:
                break
        raise AuthError("unknown kid")


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _unverified(token: str) -> tuple[Any, Any]:
    """Header and claims of a compact JWS, unverified: only to pick the issuer's key. PyJWT then parses the token
    again, strictly, and checks the signature and claims; this parse refuses what is not base64url JSON."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise AuthError("malformed token (not three base64url segments)")
    try:
        header, claims = (orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
        return header, claims
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise AuthError(f"malformed token ({type(exc).__name__})") from exc


@lru_cache(maxsize=64)
def _key_object(jwk_json: str, alg: str) -> Any:
    """The key object of a JWK (by its exact content, so a rotated key is a new entry): building one checks the
    curve point, which costs more than the rest of the lookup."""
    return jwt.PyJWK(json.loads(jwk_json), algorithm=alg).key


class Verifier:
    """Checks the bearer token of one call against the configured trust."""

    def __init__(self, auth: AuthSettings, replay: FirstUseMemory) -> None:
        self.required = auth.required
        self.algorithms = [a for a in auth.algorithms if a not in FORBIDDEN_ALGS]
        self.leeway = auth.leeway_seconds
        self.max_lifetime = auth.max_token_lifetime_seconds
        self.keys = KeySets([dict(i) for i in auth.issuers])
        self.replay = replay
        self._jku_noted: set[str] = set()

    def warm(self) -> None:
        """Do once, at start, what the first verification would do: build the key object of every pinned key for
        each allowed algorithm, and check one signature (the first ECDSA check imports OpenSSL's backend module:
        3 ms). A throwaway key signs it; no token is accepted and the replay cache is not touched."""
        for jwk in self.keys.pinned():
            for alg in self.algorithms:
                try:
                    _key_object(json.dumps(jwk, sort_keys=True), alg)
                except (jwt.PyJWTError, TypeError, ValueError):
                    continue  # not a key of that algorithm
        throwaway = ec.generate_private_key(ec.SECP384R1())
        token = jwt.encode({"warm-up": True}, throwaway, algorithm="ES384")
        jwt.decode(token, throwaway.public_key(), algorithms=["ES384"])

    def _note_ignored_jku(self, iss: str, jku: Any) -> None:
        """Log once per issuer that a token's jku was ignored because the issuer's keys are pinned."""
        if iss in self._jku_noted:
            return
        self._jku_noted.add(iss)
        logging.getLogger("her2_cds.auth").info(
            "issuer %s: tokens carry a jku (%s); ignored, the issuer's keys are pinned in the configuration",
            iss,
            str(jku)[:200],
        )

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """Return the verified claims or raise AuthError."""
        if not authorization:
            raise AuthError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization is not a Bearer token")
        token = token.strip()
        header, unverified = _unverified(token)
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise AuthError("malformed token (header or claims not an object)")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg in FORBIDDEN_ALGS or alg not in self.algorithms:
            raise AuthError(f"algorithm not allowed: {str(alg)[:20]}")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or (issuer := self.keys.issuer(iss)) is None:
            raise AuthError("untrusted issuer")
        jku = header.get("jku")
        if jku is not None and "jwks" in issuer:
            self._note_ignored_jku(iss, jku)  # pinned keys: the jku is never fetched, the signature still checked
        elif jku is not None and jku != issuer.get("jwks_url"):
            raise AuthError("jku is not the issuer's configured JWKS URL")
        kid = header.get("kid")
        key = self.keys.key_for(issuer, kid if isinstance(kid, str) else None, alg)
        base = audience.rstrip("/")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=[base, base + "/"],
                issuer=iss,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "jti", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(type(exc).__name__) from exc
        if not all(
            isinstance(claims[k], (int, float)) and not isinstance(claims[k], bool) and math.isfinite(claims[k])
            for k in ("exp", "iat")
        ):
            raise AuthError("exp or iat is not a number")  # PyJWT accepts "1700000000"; arithmetic would not
        now = time.time()
        if claims["iat"] > now + self.leeway:
            raise AuthError("issued in the future")
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise AuthError("token lifetime too long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti is not a string")
        if claims["iat"] + self.leeway < math.floor(self.replay.epoch()):  # an EHR's clock may lag by the leeway
            raise CacheForgot("issued before the replay cache started")
        ttl = int(claims["exp"] - now) + self.leeway + 1
        key_id = hashlib.sha256(json.dumps([iss, jti]).encode()).hexdigest()
        if not self.replay.first_use(key_id, ttl):
            raise AuthError("replayed jti")
        return claims
