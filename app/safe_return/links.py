"""A guardian's link to a walk home: the token carries the session and the guardian and is
signed with the secret key, so it needs no table of its own and cannot be guessed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid

from app.config import Settings

WALK_PREFIX = "aw_"
_MAC_BYTES = 16


def _mac(settings: Settings, session_id: uuid.UUID, guardian_id: uuid.UUID) -> bytes:
    return hmac.new(
        settings.secret_key.encode(),
        b"walk-view:" + session_id.bytes + guardian_id.bytes,
        hashlib.sha256,
    ).digest()[:_MAC_BYTES]


def walk_view_token(settings: Settings, session_id: uuid.UUID, guardian_id: uuid.UUID) -> str:
    raw = session_id.bytes + guardian_id.bytes + _mac(settings, session_id, guardian_id)
    return WALK_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def walk_view_url(settings: Settings, session_id: uuid.UUID, guardian_id: uuid.UUID) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/v1/guardian/walk/{walk_view_token(settings, session_id, guardian_id)}"


def read_walk_token(settings: Settings, token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(session, guardian) of a genuine token, else None."""
    if not token.startswith(WALK_PREFIX) or len(token) > 200:
        return None
    body = token[len(WALK_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32 + _MAC_BYTES:
        return None
    session_id, guardian_id = uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:32])
    if not hmac.compare_digest(raw[32:], _mac(settings, session_id, guardian_id)):
        return None
    return session_id, guardian_id
