"""The DC-09 and Contact ID vectors of ../shared/specs/STANDARDS.md, read from the file itself
(never copied into the project)."""

from __future__ import annotations

import re
from functools import cache

from loadtests.paths import SHARED

STANDARDS = SHARED / "specs" / "STANDARDS.md"


@cache
def _text() -> str:
    return STANDARDS.read_text(encoding="utf-8")


def frames() -> dict[str, bytes]:
    """Every DC-09 vector, keyed by its first 8 characters (CRC and length as published), as
    bytes from ``"`` on with the header; the ``\\n…\\r`` of the fioletoven ones removed."""
    out: dict[str, bytes] = {}
    for line in _text().splitlines():
        m = re.match(r'^(?:\\n)?([0-9A-F]{8}".*?)(?:\\r)?(?:\s{2,}\(.*)?$', line.strip())
        if m:
            out[m[1][:8]] = m[1].encode()
    return out


def contact_id_messages() -> list[str]:
    return re.findall(r"^(\d{16})  \(", _text(), flags=re.M)


def acks() -> list[bytes]:
    """The computed ACK/DUH round-trip frames, with their real LF and CR."""
    return [
        b"\n" + m.encode() + b"\r" for m in re.findall(r'`<LF>([0-9A-F]{8}"[^<]+)<CR>`', _text())
    ]
