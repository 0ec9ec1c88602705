"""``POST /api/v1/notifications``: text a customer from a template (or a literal text)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from smsline.api.auth import authorise, bearer, context_of
from smsline.api.problems import FieldError, ProblemError, answer_invalid, answer_problem, responses
from smsline.domain.msisdn import InvalidMsisdn, normalise_msisdn
from smsline.domain.segments import count_segments
from smsline.domain.templates import MAX_TEXT_LENGTH, MAX_VALUE_LENGTH, TEMPLATE_NAME
from smsline.notify.notifications import NotificationRequest, Refusal

router = APIRouter(prefix="/api/v1", tags=["notifications"])

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
ParameterValue = Annotated[str, Field(max_length=MAX_VALUE_LENGTH)] | int | float


class NotificationIn(BaseModel):
    """Who to text and what: a customer (by ``customer_id`` or ``phone``) and a ``template``
    with its ``parameters`` — or, with the scope ``notifications:send_text``, a literal ``text``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C-1001",
                    "template": "card_ready",
                    "parameters": {"last4": "4242"},
                    "status_callback": "https://crm.example.com/smsline/status",
                }
            ]
        },
    )

    customer_id: str | None = Field(default=None, min_length=1, max_length=64)
    phone: str | None = Field(
        default=None, min_length=1, max_length=32, description="any usual form; read as E.164"
    )
    template: str | None = Field(default=None, min_length=1, max_length=64)
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_LENGTH)
    status_callback: HttpUrl | None = Field(
        default=None, description="where to POST the message's final status (signed)"
    )

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str | None) -> str | None:
        if value is not None and not TEMPLATE_NAME.fullmatch(value):
            raise ValueError("is not a template name (lower-case letters, digits, '_', '-', '.')")
        return value

    @field_validator("text")
    @classmethod
    def _sendable(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("is blank")
            count_segments(value)  # raises ValueError for a text no SMS can carry
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> NotificationIn:
        if (self.customer_id is None) == (self.phone is None):
            raise ValueError("give exactly one of customer_id and phone")
        if (self.template is None) == (self.text is None):
            raise ValueError("give exactly one of template and text")
        if self.text is not None and self.parameters:
            raise ValueError("parameters go with a template, not with a literal text")
        return self


class NotificationOut(BaseModel):
    message_id: int | None = Field(
        description="the message to follow at /api/v1/messages/{id}; null when suppressed"
    )
    status: Literal["queued", "suppressed"]
    reason: Literal["opted_out", "unknown_customer"] | None = None
    detail: str | None = None
    customer_id: str | None
    phone: str | None
    template: str | None
    essential: bool
    language: Literal["en", "ru"] | None
    encoding: Literal["gsm7", "ucs2"] | None
    segments: int | None
    created_at: str


_REFUSAL_FIELDS = {"unknown-template": "body.template", "text-too-long": "body.text"}


def _refused(refusal: Refusal) -> ProblemError:
    if refusal.problems:
        errors = [FieldError(field=f"body.{p.field}", message=p.message) for p in refusal.problems]
    elif refusal.kind in _REFUSAL_FIELDS:
        errors = [FieldError(field=_REFUSAL_FIELDS[refusal.kind], message=refusal.detail)]
    else:
        errors = [FieldError(field="header.idempotency-key", message=refusal.detail)]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ProblemError(refusal.kind, detail, errors=errors)


# The hot path: other systems call this endpoint thousands of times a second. FastAPI's
# dependency resolution cost about half of a request's CPU here, so this endpoint authenticates
# and reads its header and body itself, in the same order FastAPI would (the token first, then
# the header, then the body), and documents them through ``openapi_extra``.
_IDEMPOTENCY_KEY_DESCRIPTION = (
    "unique per notification (e.g. a UUID); a retry with the same key and body gets the first "
    "answer and never a second SMS"
)
_OPENAPI: dict[str, Any] = {
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "description": _IDEMPOTENCY_KEY_DESCRIPTION,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "title": "Idempotency-Key"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": NotificationIn.model_json_schema()}},
    },
}


def _body_of(raw: bytes, content_type: str | None) -> NotificationIn:
    if content_type is not None and content_type.split(";")[0].strip().lower() not in (
        "application/json",
        "",
    ):
        raise ProblemError("unsupported-media-type", "send the body as application/json")
    try:
        return NotificationIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


@router.post(
    "/notifications",
    status_code=202,
    response_model=NotificationOut,
    summary="Text a customer",
    responses={
        200: {"model": NotificationOut, "description": "Suppressed: no SMS (see `reason`)."},
        202: {"description": "Queued: the SMS will be sent; follow it by `message_id`."},
        **responses(400, 401, 403, 415, 422, 429, 503),
    },
    openapi_extra=_OPENAPI,
)
async def send_notification(request: Request) -> JSONResponse:
    """Who to text and what (see the body's schema), under an ``Idempotency-Key``."""
    token = await authorise(request, "notifications:send", await bearer(request))
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is None:
        raise ProblemError(
            "idempotency-key-missing",
            "send an Idempotency-Key header (e.g. a UUID) so that a retry never sends twice",
            errors=[FieldError(field="header.idempotency-key", message="is required")],
        )
    if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ProblemError(
            "validation-failed",
            "header.idempotency-key: 1 to 255 printable ASCII characters without spaces",
            errors=[
                FieldError(
                    field="header.idempotency-key",
                    message="must be 1 to 255 printable ASCII characters without spaces",
                )
            ],
        )
    body = _body_of(await request.body(), request.headers.get("content-type"))
    context = context_of(request)
    if body.text is not None and "notifications:send_text" not in token.scopes:
        raise ProblemError(
            "forbidden", f"the API token {token.name!r} lacks the scope 'notifications:send_text'"
        )
    phone: str | None = None
    if body.phone is not None:
        try:
            phone = normalise_msisdn(body.phone, context.settings.default_region)
        except InvalidMsisdn as exc:
            raise ProblemError(
                "validation-failed",
                f"body.phone: {exc}",
                errors=[FieldError(field="body.phone", message=str(exc))],
            ) from None
    asked = NotificationRequest(
        token=token.id,
        idempotency_key=idempotency_key,
        customer_id=body.customer_id,
        phone=phone,
        template=body.template,
        parameters={name: _text_of(value) for name, value in body.parameters.items()},
        text=body.text,
        status_callback=str(body.status_callback) if body.status_callback is not None else None,
    )
    outcome = await context.queue_notification(asked)
    if isinstance(outcome, Refusal):
        raise _refused(outcome)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.code, headers=headers)


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


PATH = "/api/v1/notifications"
MAX_BODY_BYTES = 64 * 1024  # a notification is a few hundred bytes; a text at most a few KiB


class NotificationsLane:
    """``POST /api/v1/notifications`` straight to its endpoint, past FastAPI's routing, dependency
    resolution and middleware stack (about two thirds of a request's CPU on the event loop, which
    the dispatcher shares). The endpoint's own code and problem answers, so the answers are those
    of the app (every API test of this endpoint goes through here); every other request goes to
    the app. It sits inside Starlette's outermost error middleware, so an unexpected failure
    still answers the internal-error problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = _BoundedRequest(scope, receive)
        try:
            response = await send_notification(request)
        except ProblemError as exc:
            response = answer_problem(request, exc)
        except RequestValidationError as exc:
            response = answer_invalid(request, exc)
        await response(scope, receive, send)


class _BoundedRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ProblemError("payload-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body
