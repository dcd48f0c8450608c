"""The panic-button request signature (the firmware contract; docs/devices.md is its prose form).

    X-Ansim-Timestamp: unix seconds, decimal digits only
    X-Ansim-Nonce:     16-64 characters of [A-Za-z0-9_-], never reused by a device
    X-Ansim-Signature: lowercase hex HMAC-SHA256(key=secret as ASCII bytes,
                                                 msg=f"{timestamp}.{nonce}.".encode() + raw body)

The timestamp and nonce are signed exactly as they appear in the headers, and the body exactly as
its bytes arrive, so no JSON canonicalisation is needed on either side.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

TIMESTAMP_HEADER = "X-Ansim-Timestamp"
NONCE_HEADER = "X-Ansim-Nonce"
SIGNATURE_HEADER = "X-Ansim-Signature"

_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")

# Verifying against this key when the device is unknown keeps the work (and so the timing) of a
# rejection the same whether or not the device exists.
_DECOY_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class SignatureHeaders:
    timestamp: str
    nonce: str
    signature: str

    @property
    def timestamp_s(self) -> int:
        return int(self.timestamp)


def parse_headers(
    timestamp: str | None, nonce: str | None, signature: str | None
) -> SignatureHeaders | None:
    """The three headers when each is well formed, else ``None``."""
    if timestamp is None or nonce is None or signature is None:
        return None
    if not (
        _TIMESTAMP_RE.fullmatch(timestamp)
        and _NONCE_RE.fullmatch(nonce)
        and _SIGNATURE_RE.fullmatch(signature)
    ):
        return None
    return SignatureHeaders(timestamp=timestamp, nonce=nonce, signature=signature.lower())


def canonical_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    # Valid headers are ASCII, where UTF-8 is the same bytes; UTF-8 just never raises.
    return f"{timestamp}.{nonce}.".encode() + body


def sign(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of the canonical message; the key is the secret's ASCII bytes."""
    return hmac.new(
        secret.encode(), canonical_message(timestamp, nonce, body), hashlib.sha256
    ).hexdigest()


def verify(
    candidate_secrets: Sequence[str], timestamp: str, nonce: str, body: bytes, signature: str
) -> int | None:
    """Index of the secret that produced ``signature``, or ``None``.

    Every candidate is checked with a constant-time comparison (no early exit), so the time taken
    does not say which secret matched or how much of the signature was right.
    """
    message = canonical_message(timestamp, nonce, body)
    given = signature.lower().encode()
    matched: int | None = None
    keys = [s.encode() for s in candidate_secrets] or [_DECOY_KEY]
    for i, key in enumerate(keys):
        expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given) and matched is None and candidate_secrets:
            matched = i
    return matched
