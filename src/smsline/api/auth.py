"""Bearer-token authentication, scopes and the per-token rate limit, as FastAPI dependencies (and
as a plain call, for the hot path that skips dependency resolution)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from smsline.api.context import TOKEN_CACHE_SECONDS, ApiContext, CachedToken
from smsline.api.problems import ProblemError
from smsline.domain.tokens import public_id_of, token_hash
from smsline.notify.tokens import TokenInfo, find_token

bearer = HTTPBearer(auto_error=False, description="An API token made with `smsline tokens create`.")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


async def api_context(request: Request) -> ApiContext:
    # async, like every dependency here: FastAPI runs a plain function in a worker thread.
    return context_of(request)


Context = Annotated[ApiContext, Depends(api_context)]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="smsline"'}


async def _lookup(context: ApiContext, token: str) -> TokenInfo | None:
    if public_id_of(token) is None:
        return None
    key = token_hash(token)
    now = context.clock()
    cached = context.tokens.get(key)
    if cached is not None and cached.until > now:
        return cached.info
    async with context.db.read() as conn:
        info = await conn.run_sync(lambda sync: find_token(sync, token))
    if len(context.tokens) > 10_000:
        context.tokens.clear()
    context.tokens[key] = CachedToken(info, now + TOKEN_CACHE_SECONDS)
    return info


async def authorise(
    request: Request, scope: str, credentials: HTTPAuthorizationCredentials | None
) -> TokenInfo:
    """The request's token, which must hold ``scope`` and be within its rate; else a problem."""
    context = context_of(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            "unauthorized", "send an API token as `Authorization: Bearer <token>`", headers=_CHALLENGE
        )
    token = await _lookup(context, credentials.credentials)
    if token is None:
        raise ProblemError("unauthorized", "the API token is not valid or was revoked", headers=_CHALLENGE)
    if scope not in token.scopes:
        raise ProblemError("forbidden", f"the API token {token.name!r} lacks the scope {scope!r}")
    wait = context.throttle_token(token)
    if wait > 0:
        raise ProblemError(
            "rate-limited",
            f"over the rate limit of the API token {token.name!r}",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return token


def require(scope: str) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[TokenInfo]]:
    """A dependency: the request's token, which must hold ``scope`` and be within its rate."""

    async def authorised(request: Request, credentials: Credentials) -> TokenInfo:
        return await authorise(request, scope, credentials)

    return authorised
