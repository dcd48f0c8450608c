"""The device signature verifier: correct signatures verify, any single-byte change fails."""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.devices.signing import sign_request
from app.security import device_signature as ds
from app.security.tokens import new_device_secret

DOCS = Path(__file__).resolve().parents[2] / "docs" / "devices.md"

# The worked example in docs/devices.md; a firmware author checks her code against it.
EXAMPLE_SECRET = "8f2b6c0e4a9d1f3b5e7c9a1d3f5b7e9c0a2d4f6b8e0c2a4d6f8b0e2c4a6d8f0b"
EXAMPLE_TIMESTAMP = "1764000000"
EXAMPLE_NONCE = "q4XJ2mV9tR7wZ3kB"
EXAMPLE_BODY = (
    b'{"type":"panic","signal_id":"0b6a8f52-3c1e-4d7a-9f2b-5e8c1a4d7b30","battery_pct":87}'
)
EXAMPLE_SIGNATURE = "104d3ffdb43bc5f5460725138f896f485c103b230438fb7bf2e6c8955007aff5"

nonces = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=16, max_size=64)
timestamps = st.integers(min_value=0, max_value=10**12 - 1).map(str)
secrets_ = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


def test_docs_example_signature_is_what_the_server_computes():
    assert ds.sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, EXAMPLE_BODY) == (
        EXAMPLE_SIGNATURE
    )
    # ...and what any plain HMAC library computes from the documented canonical string.
    plain = hmac.new(
        EXAMPLE_SECRET.encode(),
        f"{EXAMPLE_TIMESTAMP}.{EXAMPLE_NONCE}.".encode() + EXAMPLE_BODY,
        hashlib.sha256,
    ).hexdigest()
    assert plain == EXAMPLE_SIGNATURE
    docs = DOCS.read_text()
    for value in (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, EXAMPLE_SIGNATURE):
        assert value in docs
    assert EXAMPLE_BODY.decode() in docs


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, timestamp=timestamps, nonce=nonces, body=st.binary(max_size=2048))
def test_any_correctly_signed_request_verifies(secret, timestamp, nonce, body):
    signature = ds.sign(secret, timestamp, nonce, body)
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert ds.parse_headers(timestamp, nonce, signature) is not None
    assert ds.verify([secret], timestamp, nonce, body, signature) == 0
    other = "1" * 64 if secret != "1" * 64 else "2" * 64
    assert ds.verify([other, secret], timestamp, nonce, body, signature) == 1


@settings(max_examples=300, deadline=None)
@given(
    secret=secrets_,
    timestamp=timestamps,
    nonce=nonces,
    body=st.binary(max_size=512),
    part=st.sampled_from(["timestamp", "nonce", "body", "signature", "secret"]),
    data=st.data(),
)
def test_any_single_byte_change_fails(secret, timestamp, nonce, body, part, data):
    signature = ds.sign(secret, timestamp, nonce, body)
    parts = {
        "timestamp": timestamp.encode(),
        "nonce": nonce.encode(),
        "body": body,
        "signature": signature.encode(),
        "secret": secret.encode(),
    }
    original = parts[part]
    if not original:  # an empty body has no byte to change: append one instead
        changed = bytes([data.draw(st.integers(0, 255))])
    else:
        i = data.draw(st.integers(0, len(original) - 1))
        delta = data.draw(st.integers(1, 255))
        changed = original[:i] + bytes([(original[i] + delta) % 256]) + original[i + 1 :]
    # Hex case is not significant (an uppercase signature is accepted on purpose).
    assume(not (part == "signature" and changed.lower() == original.lower()))
    parts[part] = changed
    text = {k: v.decode("latin-1") for k, v in parts.items() if k != "body"}
    verified = ds.verify(
        [text["secret"]], text["timestamp"], text["nonce"], parts["body"], text["signature"]
    )
    assert verified is None


def test_previous_secret_verifies_as_index_one_and_none_match_is_none():
    current, previous = new_device_secret(), new_device_secret()
    sig = ds.sign(previous, "1700000000", "n" * 16, b"{}")
    assert ds.verify([current, previous], "1700000000", "n" * 16, b"{}", sig) == 1
    assert ds.verify([current], "1700000000", "n" * 16, b"{}", sig) is None
    assert ds.verify([], "1700000000", "n" * 16, b"{}", sig) is None


def test_uppercase_hex_signature_is_accepted():
    sig = ds.sign("k" * 64, "1", "n" * 16, b"x").upper()
    headers = ds.parse_headers("1", "n" * 16, sig)
    assert headers is not None
    assert ds.verify(["k" * 64], "1", "n" * 16, b"x", headers.signature) == 0


def test_header_rules():
    good = ("1764000000", "a" * 16, "0" * 64)
    assert ds.parse_headers(*good) is not None
    for bad in [
        (None, good[1], good[2]),
        ("17640000.5", good[1], good[2]),
        ("+1764000000", good[1], good[2]),
        ("1" * 13, good[1], good[2]),
        (good[0], "a" * 15, good[2]),
        (good[0], "a" * 65, good[2]),
        (good[0], "a" * 15 + "!", good[2]),
        (good[0], "a" * 15 + "=", good[2]),
        (good[0], good[1], "0" * 63),
        (good[0], good[1], "g" * 64),
    ]:
        assert ds.parse_headers(*bad) is None, bad


def test_reference_client_headers_verify():
    secret = new_device_secret()
    headers = sign_request(secret, b'{"type":"test"}', timestamp=1764000000)
    assert headers["X-Ansim-Timestamp"] == "1764000000"
    assert 16 <= len(headers["X-Ansim-Nonce"]) <= 64
    parsed = ds.parse_headers(
        headers["X-Ansim-Timestamp"], headers["X-Ansim-Nonce"], headers["X-Ansim-Signature"]
    )
    assert parsed is not None
    assert (
        ds.verify([secret], parsed.timestamp, parsed.nonce, b'{"type":"test"}', parsed.signature)
        == 0
    )
    assert sign_request(secret, b"")["X-Ansim-Nonce"] != sign_request(secret, b"")["X-Ansim-Nonce"]
