"""The staff second factor: TOTP (RFC 6238, through pyotp) and one-time recovery codes.

The secret is kept AES-GCM encrypted under a key derived from ``ANSIM_SECRET_KEY`` and bound to
the account's id (a ciphertext copied onto another account does not decrypt), so a copy of the
database alone cannot mint codes. Changing ``ANSIM_SECRET_KEY`` therefore voids every
enrolment: staff enrol again (``ansim staff enrol-totp``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ISSUER = "Ansim"
#: RFC 6238's recommended step; authenticator apps assume it.
STEP_S = 30
#: Codes of the step before and after the current one are accepted too (clock drift, typing).
DRIFT_STEPS = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_VERSION = "v1"


@dataclass(frozen=True)
class Enrolment:
    """What the person enrolling sees once: nothing here is stored in the clear."""

    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226's recommended length


def otpauth_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def current_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (within the drift allowed), or None."""
    totp = pyotp.TOTP(secret)
    step = int((time.time() if now is None else now) // STEP_S)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        # Every candidate is compared (constant time each), so the answer's timing does not
        # tell which step matched.
        if pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            found = candidate
    return found


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"ansim/staff-totp-secret", hashlib.sha256).digest()


def encrypt_secret(secret: str, *, secret_key: str, staff_id: uuid.UUID) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key(secret_key)).encrypt(nonce, secret.encode(), staff_id.bytes)
    return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


class UndecryptableSecret(Exception):
    """The stored secret was sealed under another ``ANSIM_SECRET_KEY`` (or another account)."""


def decrypt_secret(stored: str, *, secret_key: str, staff_id: uuid.UUID) -> str:
    version, _, payload = stored.partition(":")
    if version != _VERSION:
        raise UndecryptableSecret(f"unknown TOTP secret format {version!r}")
    raw = base64.urlsafe_b64decode(payload)
    try:
        return AESGCM(_key(secret_key)).decrypt(raw[:12], raw[12:], staff_id.bytes).decode()
    except InvalidTag as exc:
        raise UndecryptableSecret("the TOTP secret does not decrypt with this key") from exc


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """``xxxxx-xxxxx``: 10 characters of a 31-letter alphabet, ~50 bits each."""
    codes = []
    for _ in range(n):
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{chars[:5]}-{chars[5:]}")
    return codes


def normalize_recovery_code(code: str) -> str:
    """What was typed, without spaces, dashes or capitals (the form that is hashed)."""
    return "".join(c for c in code.lower() if c.isalnum())
