"""JWTs laid out as vantage6 (flask-jwt-extended) lays them out, so the official clients read them.

Claims: ``fresh, iat, jti, type ("access"/"refresh"), sub, nbf, csrf, exp, client_type, roles``.
``sub`` is the integer id of a user or node, or an object for an algorithm container (whose token
has no expiry: it is valid while its task runs). Tokens of users and nodes also carry ``gen`` (the
identity's token generation) and ``sid`` (their login), which revocation checks. Reset tokens carry
a ``purpose`` claim so they can never be used as API tokens.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import jwt
from django.conf import settings
from rest_framework_simplejwt.tokens import Token

ALGORITHM = "HS256"
TIME_CLAIMS = ("exp", "iat", "nbf")


class _VantageToken(Token):
    """A simplejwt token with the extra claims of flask-jwt-extended."""

    def __init__(
        self, sub: object, client_type: str, roles: list[str] | None = None, **extra: object
    ) -> None:
        super().__init__()
        self.payload.update(
            {
                "sub": sub,
                "fresh": False,
                "nbf": self.payload["iat"],
                "csrf": str(uuid.uuid4()),
                "client_type": client_type,
                "roles": roles or [],
                **extra,
            }
        )


class AccessToken(_VantageToken):
    token_type = "access"

    @property
    def lifetime(self) -> timedelta:  # type: ignore[override]  # read from the settings when a token is made
        return settings.ACCESS_TOKEN_LIFETIME


class RefreshToken(_VantageToken):
    token_type = "refresh"

    @property
    def lifetime(self) -> timedelta:  # type: ignore[override]  # read from the settings when a token is made
        return settings.REFRESH_TOKEN_LIFETIME


class _ResetToken(_VantageToken):
    token_type = "access"
    lifetime = timedelta(minutes=settings.EMAIL_TOKEN_VALIDITY_MINUTES)


def login_tokens(
    sub: int,
    client_type: str,
    roles: list[str] | None,
    *,
    generation: int,
    session_id: str,
    refresh_jti: str,
    ends: datetime | None,
) -> tuple[str, str]:
    """An (access, refresh) pair of one login of a user or node; neither outlives ``ends``."""
    pair = []
    for token in (
        AccessToken(sub, client_type, roles, gen=generation, sid=session_id),
        RefreshToken(sub, client_type, roles, gen=generation, sid=session_id, jti=refresh_jti),
    ):
        if ends is not None:
            token.payload["exp"] = min(token.payload["exp"], int(ends.timestamp()))
        pair.append(str(token))
    return pair[0], pair[1]


def container_token(identity: dict) -> str:
    """A container token without expiry (checked against its task instead); ``sub`` is the
    container's identity object."""
    token = AccessToken(identity, "container")
    del token.payload["exp"]
    return str(token)


def reset_token(user_id: int, purpose: str, fingerprint: str) -> str:
    """A mailed token for a password or two-factor reset; ``purpose`` keeps it off the API.

    ``fingerprint`` stands for the account's credentials when the token is issued: the token is
    void once they change (by its own use, too).
    """
    return str(_ResetToken({"id": str(user_id)}, "container", purpose=purpose, fingerprint=fingerprint))


class TokenError(Exception):
    """A token that cannot be used: ``status`` and ``msg`` are what the client gets."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def decode(raw: str) -> dict:
    """The verified claims of ``raw``; TokenError with flask-jwt-extended's status and message."""
    try:
        claims = jwt.decode(
            raw,
            settings.JWT_SECRET_KEY,
            algorithms=[ALGORITHM],
            options={"verify_sub": False, "require": ["iat", "type", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError(401, "Token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(422, str(exc) or "Invalid token") from None
    # PyJWT's int() of an exp, iat or nbf that is no finite number; JSON nested beyond the decoder's
    # reach (in a header too, which is read before the signature is checked).
    except (TypeError, OverflowError, RecursionError):
        raise TokenError(422, "Invalid token") from None
    # PyJWT takes any text int() reads as a time, any ``sub`` and no expiry; their readers here take
    # numbers, the integer id of a user or node or the object of a container (or of a mailed reset
    # token), and only a container's token lasts without one (as long as its task).
    container = claims.get("client_type") == "container"
    if (
        type(claims["sub"]) is not (dict if container else int)
        or ("exp" not in claims and not container)
        or not all(type(claims.get(name, 0)) in (int, float) for name in TIME_CLAIMS)
    ):
        raise TokenError(422, "Invalid token")
    return claims


def is_api_access_token(raw: str) -> bool:
    """A valid access token of this server (signature, expiry); a mailed reset token is an access token
    with a purpose, and not one of the API."""
    try:
        claims = decode(raw)
    except TokenError:
        return False
    return claims.get("type") == "access" and not claims.get("purpose")


def reset_token_claims(raw: str, purpose: str) -> tuple[int, str]:
    """The user id and credentials fingerprint a mailed reset token of ``purpose`` was issued for.

    TokenError: 401 when it expired, 400 when it is not a reset token of that purpose.
    """
    try:
        claims = decode(raw)
    except TokenError as exc:
        if exc.status == 401:
            raise
        raise TokenError(400, "Invalid reset token") from None
    sub, fingerprint = claims.get("sub"), claims.get("fingerprint")
    if claims.get("purpose") != purpose or not isinstance(sub, dict) or not isinstance(fingerprint, str):
        raise TokenError(400, "Invalid reset token")
    try:
        return int(sub["id"]), fingerprint
    except (KeyError, TypeError, ValueError):
        raise TokenError(400, "Invalid reset token") from None
