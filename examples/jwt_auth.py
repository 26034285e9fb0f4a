"""A token check for `twistd -n gameframe --auth examples.jwt_auth:verify`: JWTs signed (HS256) with $GAMEFRAME_JWT_SECRET."""

from __future__ import annotations

import os

import jwt

SECRET_VARIABLE = "GAMEFRAME_JWT_SECRET"

# Read once, when twistd imports this module: a server started without the
# secret fails at once, in one line, instead of refusing every player.
_secret = os.environ.get(SECRET_VARIABLE, "")
if len(_secret) < 32:
    raise RuntimeError(f"set {SECRET_VARIABLE} to the signing secret (32 characters or more)")


def verify(token: str) -> str:
    """
    The user a token names (its C{sub} claim), if the token is signed with
    the secret and has not expired (C{exp} is required); raises otherwise,
    and the player gets the error C{unauthorized}.

    Only HS256 is accepted: a token cannot pick a weaker algorithm (or
    C{none}) for itself.
    """
    claims = jwt.decode(
        token, _secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
    )
    return str(claims["sub"])
