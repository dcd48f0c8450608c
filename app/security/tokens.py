"""Opaque bearer tokens: 256-bit random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

MEMBER_PREFIX = "am_"
STAFF_PREFIX = "as_"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_device_secret() -> str:
    return secrets.token_hex(32)
