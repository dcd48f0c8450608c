"""A reference client for the device signature: what a button's firmware does before each request.

Tests, load tests and the firmware docs use it; it depends on nothing but the standard library and
the verifier's own ``sign`` so the two cannot drift apart.
"""

from __future__ import annotations

import secrets
import time

from app.security.device_signature import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


def new_nonce() -> str:
    """32 URL-safe characters (192 random bits): well inside the 16-64 allowed."""
    return secrets.token_urlsafe(24)


def sign_request(
    secret: str, body: bytes, *, timestamp: int | None = None, nonce: str | None = None
) -> dict[str, str]:
    """Headers for one signed request carrying exactly ``body``.

    Send the body bytes unchanged after signing (re-serialising the JSON would change them).
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    n = nonce if nonce is not None else new_nonce()
    return {
        TIMESTAMP_HEADER: ts,
        NONCE_HEADER: n,
        SIGNATURE_HEADER: sign(secret, ts, n, body),
        "Content-Type": "application/json",
    }
