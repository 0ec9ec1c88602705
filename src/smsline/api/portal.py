"""The customer portal's login check and password change, for the temporary passwords that
``CLIENT info`` texts. Rate limited per login; passwords are only ever hashed."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from smsline.api.auth import Context, require
from smsline.api.context import ApiContext
from smsline.api.problems import FieldError, ProblemError, responses
from smsline.notify.portal import MAX_PASSWORD, WeakPassword
from smsline.notify.tokens import TokenInfo

router = APIRouter(prefix="/api/v1/portal", tags=["portal"])

Login = Annotated[str, Field(min_length=1, max_length=128)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: Login
    password: Password


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: Login
    password: Password = Field(description="the current (usually temporary) password")
    new_password: Password


class VerifyOut(BaseModel):
    result: Literal["ok", "wrong", "expired", "must_change"] = Field(
        description="ok; wrong (unknown login or wrong password); expired (right but too old: text "
        "CLIENT info for a new one); must_change (right, temporary: set a new one first)"
    )
    customer_id: str | None = Field(default=None, description="given for ok and must_change")


class PasswordOut(BaseModel):
    result: Literal["changed", "wrong", "expired"]
    customer_id: str | None = None


def _throttle(context: ApiContext, login: str) -> None:
    wait = context.throttle_login(login)
    if wait > 0:
        raise ProblemError(
            "rate-limited",
            "too many attempts for this login; wait before trying again",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Check a portal login and password",
    responses=responses(400, 401, 403, 422, 429),
)
async def verify(
    body: VerifyIn, context: Context, _token: Annotated[TokenInfo, Depends(require("portal:verify"))]
) -> VerifyOut:
    _throttle(context, body.login)
    verdict = await context.passwords().verify(body.login, body.password)
    return VerifyOut(result=verdict.outcome, customer_id=verdict.customer_id)


@router.post(
    "/password",
    response_model=PasswordOut,
    summary="Set a new portal password after a temporary one",
    responses=responses(400, 401, 403, 422, 429),
)
async def change_password(
    body: PasswordIn, context: Context, _token: Annotated[TokenInfo, Depends(require("portal:verify"))]
) -> PasswordOut:
    _throttle(context, body.login)
    try:
        verdict = await context.passwords().change_password(body.login, body.password, body.new_password)
    except WeakPassword as exc:
        raise ProblemError(
            "weak-password",
            f"body.new_password: {exc}",
            errors=[FieldError(field="body.new_password", message=str(exc))],
        ) from None
    if verdict.outcome == "ok":
        return PasswordOut(result="changed", customer_id=verdict.customer_id)
    return PasswordOut(result="expired" if verdict.outcome == "expired" else "wrong")
