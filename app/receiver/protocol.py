"""SIA DC-09 frames (ANSI/SIA DC-09-2013): parsing, CRC-16/ARC, AES-CBC, and the receiver's
answers. Pure functions, no I/O: the server (app/receiver/server.py) feeds it one line at a
time, the panel simulator (tests/receiver/simulator.py) builds frames with it.

A frame on the wire::

    <LF><crc:4 hex><0LLL:4 hex>"<id>"<seq:4>[R<rcvr>]L<pref>#<acct>[<data>][x-data]<ts><CR>

The CRC and the length both cover the bytes from the opening ``"`` to the CR (excluded). In an
encrypted frame (``"*SIA-DCS"``, ``"*ADM-CID"``, ``"*NULL"``) everything after ``[`` up to
the CR is uppercase hex of AES-CBC (zero IV) ciphertext of ``<pad>|<data>]<x-data><ts>``.

Nothing here raises on bad input: ``parse_frame`` returns a ``Frame`` or a ``BadFrame`` that
says why (the server answers or drops accordingly, see ``BadFrame.answerable``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LF = 0x0A
CR = 0x0D

#: The tokens a receiver accepts (a leading ``*`` means encrypted).
TOKENS = frozenset({"SIA-DCS", "ADM-CID", "NULL"})

# After the 8 header characters: "id" seq [Rrcvr] Lpref #acct [ ... (the rest is the body).
_HEAD = re.compile(
    rb'"(?P<token>\*?[A-Z-]{3,8})"(?P<seq>[0-9]{4})(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?'
    rb"L(?P<pref>[0-9A-Fa-f]{0,6})#(?P<acct>[0-9A-Fa-f]{3,16})\["
)
# The timestamp at the end of a plain body: _HH:MM:SS,MM-DD-YYYY (20 characters).
_TS = re.compile(rb"_(\d\d):(\d\d):(\d\d),(\d\d)-(\d\d)-(\d{4})$")
_XDATA = re.compile(rb"\[([A-Za-z])([^\[\]]*)\]")
_HEX = re.compile(rb"[0-9A-Fa-f]*")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC: reflected polynomial 0x8005 (0xA001), init 0, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# The table form of the same, for the hot path (the receiver checks every frame).
_TABLE = [crc16_arc(bytes([i])) for i in range(256)]


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame(body: bytes) -> bytes:
    """``<LF><CRC><0LLL><body><CR>`` for a body that starts at the opening ``"``."""
    return b"\n%04X%04X%s\r" % (crc16(body), len(body), body)


def timestamp(at: datetime) -> str:
    """``_HH:MM:SS,MM-DD-YYYY`` in UTC."""
    return at.astimezone(UTC).strftime("_%H:%M:%S,%m-%d-%Y")


def parse_timestamp(raw: bytes) -> datetime | None:
    m = _TS.search(raw)
    if m is None:
        return None
    hh, mi, ss, mo, dd, yy = (int(g) for g in m.groups())
    try:
        return datetime(yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError:
        return None


# --- keys and AES ---------------------------------------------------------------------------

_KEY_LENGTHS = (16, 24, 32)


def parse_key(text: str, *, hex_key: bool | None = None) -> bytes:
    """An account's AES key from how the installer wrote it: 16/24/32 ASCII characters (the
    usual form, pysiaalarm and most panels) or 32/48/64 hex digits (ioBroker.sia's ``hex``).
    ``hex_key`` forces one reading; ``None`` picks by length. ``ValueError`` otherwise."""
    if hex_key is None:
        hex_key = len(text) in (32, 48, 64) and _HEX.fullmatch(text.encode()) is not None
    if hex_key:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError("the key is not hex") from None
    else:
        if not text.isascii():
            raise ValueError("an ASCII key must be ASCII")
        key = text.encode()
    if len(key) not in _KEY_LENGTHS:
        raise ValueError("an AES key is 16, 24 or 32 bytes (128, 192 or 256 bits)")
    return key


def decrypt(key: bytes, ciphertext_hex: bytes) -> bytes | None:
    """AES-CBC with a zero IV; ``None`` when the hex is bad or not whole blocks."""
    if not ciphertext_hex or len(ciphertext_hex) % 32 or _HEX.fullmatch(ciphertext_hex) is None:
        return None
    data = bytes.fromhex(ciphertext_hex.decode("ascii"))
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    return dec.update(data) + dec.finalize()


_PAD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def encrypt(key: bytes, region: bytes) -> bytes:
    """Uppercase hex of ``<pad>|<region>`` (the region starts after ``[``), padded to whole
    blocks with random alphanumerics (16 of them when it is already whole: DC-09 §5.4)."""
    need = 16 - (len(region) + 1) % 16
    pad = bytes(secrets.choice(_PAD_ALPHABET) for _ in range(need or 16))
    plain = pad + b"|" + region
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return (enc.update(plain) + enc.finalize()).hex().upper().encode()


# --- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A frame whose CRC and length are right. ``data`` is the plain content between ``[``
    and ``]`` (without the account echo ``#acct|`` and, if encrypted, without the pad), or
    ``None`` for an encrypted frame not yet decrypted."""

    token: str
    encrypted: bool
    seq: str
    receiver: str | None
    prefix: str
    account: str
    #: Everything after ``[`` up to the CR, as sent (hex ciphertext when encrypted).
    body: bytes

    @property
    def kind(self) -> str:
        return self.token.lstrip("*")


@dataclass(frozen=True)
class BadFrame:
    reason: str
    #: The account, sequence and prefix when the head could be read, so a DUH can echo them.
    seq: str | None = None
    receiver: str | None = None
    prefix: str | None = None
    account: str | None = None

    @property
    def answerable(self) -> bool:
        """A frame with a good CRC and length whose content we cannot process gets a DUH; a
        frame that fails the CRC or length is dropped (the panel retries: the noise may be
        ours, and a DUH would need an account we cannot trust)."""
        return self.account is not None


@dataclass(frozen=True)
class Content:
    """The decrypted (or plain) content of a frame."""

    #: Between ``[`` and ``]``: e.g. ``#1234|Nri1/PA501`` or ``|1110 00 129`` or empty.
    data: bytes
    xdata: dict[str, bytes] = field(default_factory=dict)
    sent_at: datetime | None = None


def parse_frame(line: bytes) -> Frame | BadFrame:
    """One line from ``<LF>`` (optional) to ``<CR>`` (optional; a trailing NUL is dropped).

    CRC-16/ARC and the hex length are checked over the bytes from ``"`` to the end; the CRC is
    accepted as 4 hex characters (DC-09-2013) or as 2 binary bytes (earlier editions and some
    Lupusec panels, then the length follows at offset 2)."""
    line = line.rstrip(b"\x00")
    if line.startswith(b"\n"):
        line = line[1:]
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) < 9:
        return BadFrame("truncated")
    quote = line.find(b'"', 0, 9)
    if quote == 8:
        crc_text, length_text, body = line[:4], line[4:8], line[8:]
        if _HEX.fullmatch(crc_text) is None:
            return BadFrame("crc not hex")
        crc = int(crc_text, 16)
    elif quote == 6:  # binary CRC, 2 bytes big-endian
        crc, length_text, body = int.from_bytes(line[:2], "big"), line[2:6], line[6:]
    else:
        return BadFrame("no id token")
    if _HEX.fullmatch(length_text) is None:
        return BadFrame("length not hex")
    if int(length_text, 16) != len(body):
        return BadFrame("wrong length")
    if crc16(body) != crc:
        return BadFrame("wrong crc")
    m = _HEAD.match(body)
    if m is None:
        return BadFrame("bad head")
    token = m["token"].decode()
    seq, acct = m["seq"].decode(), m["acct"].decode().upper()
    rcvr = m["rcvr"].decode().upper() if m["rcvr"] else None
    pref = m["pref"].decode().upper()
    if token.lstrip("*") not in TOKENS:
        return BadFrame("unknown token", seq, rcvr, pref, acct)
    return Frame(
        token=token,
        encrypted=token.startswith("*"),
        seq=seq,
        receiver=rcvr,
        prefix=pref,
        account=acct,
        body=body[m.end() :],
    )


def open_content(frame_: Frame, key: bytes | None) -> Content | None:
    """The frame's content, decrypting with ``key`` if it is encrypted; ``None`` when it
    cannot be read (no key, bad hex, wrong key, no ``]``)."""
    if frame_.encrypted:
        if key is None:
            return None
        plain = decrypt(key, frame_.body)
        if plain is None:
            return None
        # The pad never holds | [ or ]: the content starts after the first | (DC-09 §5.4),
        # or, for panels that leave the | out (pysiaalarm's *NULL vector), after the pad
        # itself, which is whatever precedes the data's ] in a NULL.
        bar = plain.find(b"|")
        close = plain.find(b"]")
        if close < 0 or _PRINTABLE.fullmatch(plain[:close]) is None:
            return None  # a wrong key: garbage (the pad and the data are printable ASCII)
        # ``<pad>|#acct|data]``: keep the data as a plain frame has it (from the account).
        inner = plain[bar + 1 : close] if 0 <= bar < close else b""
        rest = plain[close + 1 :]
    else:
        close = frame_.body.find(b"]")
        if close < 0:
            return None
        inner, rest = frame_.body[:close], frame_.body[close + 1 :]
    xdata = {m[1].decode(): m[2] for m in _XDATA.finditer(rest)}
    return Content(data=inner, xdata=xdata, sent_at=parse_timestamp(rest))


def stale(sent_at: datetime | None, now: datetime, *, past_s: float, future_s: float) -> bool:
    """An encrypted message outside the window (``past_s`` behind, ``future_s`` ahead of the
    receiver: +20/-40 s by default) is stale; one with no timestamp is too."""
    if sent_at is None:
        return True
    return not (now - timedelta(seconds=past_s) <= sent_at <= now + timedelta(seconds=future_s))


# --- the receiver's answers -----------------------------------------------------------------


def _route(seq: str, receiver: str | None, prefix: str, account: str) -> bytes:
    r = f"R{receiver}" if receiver is not None else ""
    return f"{seq}{r}L{prefix}#{account}".encode()


def ack(frame_: Frame, key: bytes | None = None, *, now: datetime | None = None) -> bytes:
    """``"ACK"`` echoing sequence, receiver, prefix and account; ``"*ACK"`` with an encrypted
    ``[<pad>|]<timestamp>`` for an encrypted message."""
    route = _route(frame_.seq, frame_.receiver, frame_.prefix, frame_.account)
    if frame_.encrypted and key is not None:
        at = now or datetime.now(UTC)
        return frame(b'"*ACK"' + route + b"[" + encrypt(key, b"]" + timestamp(at).encode()))
    return frame(b'"ACK"' + route + b"[]")


def duh(seq: str, receiver: str | None, prefix: str, account: str) -> bytes:
    """``"DUH"``: received correctly, but we cannot process it."""
    return frame(b'"DUH"' + _route(seq, receiver, prefix, account) + b"[]")


def nak(now: datetime | None = None) -> bytes:
    """``"NAK"0000R0L0A0[]<receiver's GMT time>``, never encrypted: the panel sets its clock."""
    at = now or datetime.now(UTC)
    return frame(b'"NAK"0000R0L0A0[]' + timestamp(at).encode())


# --- building frames (the panel's side: the simulator, the tests) ---------------------------


def build(
    token: str,
    seq: int,
    account: str,
    data: str,
    *,
    prefix: str = "0",
    receiver: str | None = None,
    key: bytes | None = None,
    at: datetime | None = None,
    xdata: str = "",
    with_timestamp: bool = True,
) -> bytes:
    """A frame as a panel sends it: ``data`` is the content after ``#acct|`` (``""`` for a
    NULL). With ``key`` the token gets its ``*`` and the region is encrypted."""
    head = f"{seq:04d}" if isinstance(seq, int) else str(seq)
    route = _route(head, receiver, prefix, account)
    inner = f"#{account}|{data}" if data else ""
    ts = timestamp(at or datetime.now(UTC)) if (with_timestamp or key is not None) else ""
    region = f"{inner}]{xdata}{ts}".encode()
    if key is not None:
        return frame(f'"*{token}"'.encode() + route + b"[" + encrypt(key, region))
    return frame(f'"{token}"'.encode() + route + b"[" + region)
