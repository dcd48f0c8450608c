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


def member_by_token_sql(token_hash: str) -> str:
    """The member a token hash (the SQL expression ``token_hash``) signs in, if the token is not
    revoked and she is not erased: one definition for the API's dependency and the SOS insert."""
    return f"""SELECT m.id FROM member_token t JOIN member m ON m.id = t.member_id
WHERE t.token_hash = {token_hash} AND t.revoked_at IS NULL AND m.deleted_at IS NULL"""


def new_device_secret() -> str:
    return secrets.token_hex(32)
