"""Errors as RFC 9457 problem details (``application/problem+json``), each with a stable type.

The type of a problem is ``/api/problems/<name>``; fetching it gives the problem's title and
what it means. A body or parameter that fails validation is a 422 (400 for JSON that does not
parse) whose ``errors`` name each field and why; nothing a client sends ends in a 500 with
details: an unexpected failure is an ``internal-error`` problem that tells nothing of the inside.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("smsline.api")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "/api/problems/"

# name -> (status, title, what it means)
PROBLEMS: Final[dict[str, tuple[int, str, str]]] = {
    "unauthorized": (401, "Unauthorized", "No valid API token: send `Authorization: Bearer <token>`."),
    "forbidden": (403, "Forbidden", "The API token lacks the scope this endpoint needs."),
    "not-found": (404, "Not found", "There is no such resource."),
    "method-not-allowed": (405, "Method not allowed", "This resource does not support the method."),
    "invalid-json": (400, "Invalid JSON", "The body is not valid JSON."),
    "bad-request": (400, "Bad request", "The request cannot be read (e.g. a body that does not parse)."),
    "validation-failed": (
        422,
        "Validation failed",
        "A field of the request is missing or invalid; `errors` lists each.",
    ),
    "idempotency-key-missing": (
        400,
        "Idempotency-Key missing",
        "POST /api/v1/notifications needs an `Idempotency-Key` header.",
    ),
    "idempotency-key-reused": (
        422,
        "Idempotency-Key reused",
        "The key was used before with a different request; a new notification needs a new key.",
    ),
    "unknown-template": (422, "Unknown template", "No template has this name."),
    "invalid-parameters": (
        422,
        "Invalid template parameters",
        "The parameters do not match what the template declares.",
    ),
    "invalid-template": (422, "Invalid template", "The template cannot be saved; `errors` says why."),
    "text-too-long": (422, "Text too long", "The SMS would take more segments than allowed."),
    "invalid-customer": (422, "Invalid customer", "The customer data breaks an import rule."),
    "invalid-customer-file": (422, "Invalid customer file", "The CSV file cannot be imported at all."),
    "payload-too-large": (413, "Payload too large", "The body is larger than this endpoint accepts."),
    "unsupported-media-type": (415, "Unsupported media type", "Send the body in the documented media type."),
    "weak-password": (422, "Weak password", "The new password does not meet the password rules."),
    "invalid-campaign": (422, "Invalid campaign", "The campaign cannot be created; `errors` says why."),
    "campaign-state-conflict": (
        409,
        "Campaign state conflict",
        "The campaign's state does not allow this action (e.g. resuming a campaign that is not paused).",
    ),
    "rate-limited": (429, "Too many requests", "Over the rate limit; try again after `Retry-After` seconds."),
    "service-unavailable": (
        503,
        "Service unavailable",
        "smsline cannot take the request right now (e.g. it is restarting); try again after"
        " `Retry-After` seconds with the same Idempotency-Key: a request it did take is answered"
        " as it was, never sent twice.",
    ),
    "internal-error": (500, "Internal error", "smsline failed to handle the request; it was logged."),
}


class FieldError(BaseModel):
    field: str = Field(description="where: e.g. `body.parameters.amount`, `header.idempotency-key`")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="stable identifier of the kind of problem, e.g. /api/problems/forbidden")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    def __init__(
        self,
        name: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        assert name in PROBLEMS, name
        self.name = name
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        super().__init__(detail or name)


def problem_response(
    name: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    status, title, _ = PROBLEMS[name]
    body = Problem(
        type=TYPE_PREFIX + name,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers an endpoint may give."""
    described: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        names = sorted(name for name, (code, _, _) in PROBLEMS.items() if code == status)
        described[status] = {
            "model": Problem,
            "description": "Problem types: " + ", ".join(f"`{n}`" for n in names),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in (429, 503):
            described[status]["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
    return described


def _field_name(location: Iterable[Any]) -> str:
    return ".".join(str(part) for part in location)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    found: list[FieldError] = []
    for error in errors:
        message = str(error.get("msg", "is invalid"))
        found.append(FieldError(field=_field_name(error.get("loc", ())), message=message))
    return found


def answer_problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(
        exc.name, exc.detail, instance=request.url.path, errors=exc.errors, headers=exc.headers
    )


def answer_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    raw = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem_response("invalid-json", "the body is not valid JSON", instance=request.url.path)
    errors = field_errors(raw)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response("validation-failed", detail, instance=request.url.path, errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, exc: ProblemError) -> JSONResponse:
        return answer_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer_invalid(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        by_status = {
            400: "bad-request",
            404: "not-found",
            405: "method-not-allowed",
            413: "payload-too-large",
            415: "unsupported-media-type",
        }
        name = by_status.get(exc.status_code, "bad-request" if exc.status_code < 500 else "internal-error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
        return problem_response(name, detail, instance=request.url.path, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_failure(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.__class__.__name__, exc_info=exc)
        return problem_response("internal-error", instance=request.url.path)

    @app.get(TYPE_PREFIX + "{name}", include_in_schema=False)
    async def describe(name: str) -> dict[str, object]:
        if name not in PROBLEMS:
            raise ProblemError("not-found", f"no problem type {name!r}")
        status, title, meaning = PROBLEMS[name]
        return {"type": TYPE_PREFIX + name, "title": title, "status": status, "description": meaning}
