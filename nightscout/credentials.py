"""A policy's upload credentials: the API secret and access token an app is given, the hashes
the database keeps, and the JWT of API v3.

Nightscout's apps send the API secret as the lowercase hex SHA-1 (or SHA-512) of it in the
`api-secret` header, or an access token as `?token=`, or a JWT from
`/api/v2/authorization/request/<token>` as `Authorization: Bearer` (docs/nightscout.md). The
secret and token are derived from the deployment secret, the policy and a generation (bumped by
`--rotate`), as device passwords are (glucover/broker.py): the policyholder's page can show
them again, while the database keeps only SHA-256 of what an app sends, so a copy of it lets
no one upload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

MIN_SECRET_CHARS = 12  # Nightscout refuses shorter API secrets
JWT_LIFETIME_S = 8 * 3600
_DEVICE_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Credentials:
    policy_id: str
    device_id: str
    generation: int
    api_secret: str
    token: str


def device_id_of(policy_id: str) -> str:
    """The policy's Nightscout device: one per policy, a valid device id."""
    return ("ns-" + _DEVICE_CHARS.sub("-", policy_id))[:64]


def _derive(secret: str, what: str) -> str:
    return hmac.new(secret.encode(), f"nightscout:{what}".encode(), hashlib.sha256).hexdigest()


def credentials(secret: str, policy_id: str, generation: int) -> Credentials:
    api_secret = _derive(secret, f"secret:{policy_id}:{generation}")[:24]
    token = "glucover-" + _derive(secret, f"token:{policy_id}:{generation}")[:20]
    assert len(api_secret) >= MIN_SECRET_CHARS
    return Credentials(policy_id, device_id_of(policy_id), generation, api_secret, token)


def app_urls(base_url: str, creds: Credentials) -> dict[str, str]:
    """What each app is told: the base URL, and xDrip+'s form with the secret in it."""
    parts = urlsplit(base_url.rstrip("/"))
    netloc = f"{creds.api_secret}@{parts.netloc}"
    return {"base_url": base_url.rstrip("/"),
            "xdrip_url": urlunsplit((parts.scheme, netloc, parts.path + "/api/v1/", "", ""))}


def key(sent: str) -> str:
    """What the database keeps of a credential as an app sends it: SHA-256 hex."""
    return hashlib.sha256(sent.strip().lower().encode()).hexdigest()


def token_key(token: str) -> str:
    """Tokens are compared as sent (case matters in the JWT, not in our hex tokens)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def sha1_hex(secret: str) -> str:
    return hashlib.sha1(secret.encode()).hexdigest()  # noqa: S324 - Nightscout's wire format


def sha512_hex(secret: str) -> str:
    return hashlib.sha512(secret.encode()).hexdigest()


def keys(creds: Credentials) -> tuple[str, str, str]:
    """(secret_sha1_key, secret_sha512_key, token_key) for the database."""
    return key(sha1_hex(creds.api_secret)), key(sha512_hex(creds.api_secret)), \
        token_key(creds.token)


# ---------------------------------------------------------------- JWT (HS256, RFC 7519)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwt_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"nightscout:jwt", hashlib.sha256).digest()


def issue_jwt(secret: str, policy_id: str, generation: int, now: int) -> tuple[str, int, int]:
    """(jwt, iat, exp) for a policy's current credentials."""
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    exp = now + JWT_LIFETIME_S
    body = _b64(orjson.dumps({"sub": policy_id, "gen": generation, "iat": now, "exp": exp}))
    signature = hmac.new(_jwt_key(secret), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}", now, exp


def verify_jwt(secret: str, token: str, now: int) -> tuple[str, int] | None:
    """(policy_id, generation) of a valid, unexpired JWT of ours; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, body, signature = parts
    expected = hmac.new(_jwt_key(secret), f"{header}.{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(signature), expected):
            return None
        head: Any = orjson.loads(_unb64(header))
        claims: Any = orjson.loads(_unb64(body))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(head, dict) or head.get("alg") != "HS256" or not isinstance(claims, dict):
        return None
    exp, sub, gen = claims.get("exp"), claims.get("sub"), claims.get("gen")
    if type(exp) is not int or exp <= now or not isinstance(sub, str) or type(gen) is not int:
        return None
    return sub, gen
