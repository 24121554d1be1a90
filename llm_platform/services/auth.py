"""Who is calling: the FastAPI dependencies that turn an `Authorization: Bearer` header into a token entry, or refuse.

No token, or one the server does not know: 401 with `WWW-Authenticate: Bearer`. A known token that may not do this
(a read-only token on POST or DELETE, a token for another namespace): 403, said by the route that knows the namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .tokens import Token, TokenFile, TokenFileError, match

log = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `llmp api token create --namespace NS [--read-only]`, sent as `Authorization: Bearer`.",
)
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def caller_of(tokens: TokenFile) -> Callable[..., Token]:
    """The dependency every protected route has: the caller's token entry, or 401."""

    def caller(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Token:
        if credentials is None:
            raise HTTPException(
                401,
                "no bearer token: send `Authorization: Bearer <token>`; an operator creates one with "
                "`llmp api token create --namespace NS`",
                headers=CHALLENGE,
            )
        try:
            known = tokens.tokens()
        except TokenFileError as e:
            log.error("refusing every request: %s", e)
            raise HTTPException(
                401, "this server's token file is invalid, so no token is accepted; the server log says why",
                headers=CHALLENGE,
            ) from None  # fmt: skip
        if not known:
            raise HTTPException(
                401, "this server has no tokens yet; an operator creates one with `llmp api token create`", CHALLENGE
            )
        token = match(known, credentials.credentials)
        if token is None:
            raise HTTPException(401, "unknown or revoked bearer token; ask an operator for a new one", CHALLENGE)
        return token

    return caller


def writer_of(caller: Callable[..., Token]) -> Callable[..., Token]:
    """The dependency of the routes that change something: a read-write token, or 403."""

    def writer(token: Token = Depends(caller)) -> Token:
        if token.read_only:
            raise HTTPException(
                403, f"token {token.id} is read-only: it may list and read jobs, not submit or delete them"
            )
        return token

    return writer


def check_namespace(token: Token, namespace: str) -> None:
    """403 unless the token is for `namespace` (the URL's or the body's)."""
    if namespace != token.namespace:
        raise HTTPException(403, f"namespace '{namespace}': token {token.id} is for namespace '{token.namespace}' only")
