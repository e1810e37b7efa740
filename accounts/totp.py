"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): 6 digits, SHA-1, 30-second steps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote

DIGITS = 6
STEP_SECONDS = 30
# Codes of the previous and next step are accepted too, for clock drift between phone and server.
WINDOW = 1
SECRET_LENGTH = 32  # base32 characters (160 bits)


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_LENGTH * 5 // 8)).decode()


def _counter(at: float | None) -> int:
    return int((time.time() if at is None else at) // STEP_SECONDS)


def hotp(secret: str, counter: int) -> str:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def totp(secret: str, at: float | None = None) -> str:
    """The code of ``secret`` at unix time ``at`` (now by default)."""
    return hotp(secret, _counter(at))


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step within the window whose code is ``code``; None when there is none.

    The caller accepts each step once per user, so a seen code cannot be replayed.
    """
    # A code sent as a JSON number has lost its leading zeros.
    code = code.strip().zfill(DIGITS)
    # ASCII only: other scripts' digits are digits to ``isdigit`` and break ``compare_digest``.
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    now = _counter(at)
    steps = range(now - WINDOW, now + WINDOW + 1)
    return next((step for step in steps if hmac.compare_digest(hotp(secret, step), code)), None)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read from a QR code."""
    label = quote(f"{issuer}:{username}", safe=":@")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"
