"""Notification templates: ``/api/v1/templates``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from smsline.api.auth import Context, require
from smsline.api.problems import FieldError, ProblemError, responses
from smsline.domain.templates import MAX_TEXT_LENGTH, MAX_VALUE_LENGTH
from smsline.notify.templates import (
    InvalidTemplate,
    Template,
    delete_template,
    get_template,
    list_templates,
    save_template,
)
from smsline.notify.tokens import TokenInfo

router = APIRouter(prefix="/api/v1", tags=["templates"])

TemplateName = Annotated[str, Path(min_length=1, max_length=64, description="the template's name")]


class TemplateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text_en": "Your card ending {last4} is ready. Pick it up at your branch.",
                    "text_ru": "Ваша карта *{last4} готова. Заберите её в отделении.",
                    "parameters": ["last4"],
                    "sample": {"last4": "4242"},
                    "essential": False,
                }
            ]
        },
    )

    text_en: str = Field(
        max_length=MAX_TEXT_LENGTH, description="placeholders as {name}; {{ and }} for braces"
    )
    text_ru: str = Field(max_length=MAX_TEXT_LENGTH)
    parameters: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    sample: dict[str, Annotated[str, Field(max_length=MAX_VALUE_LENGTH)]] | None = Field(
        default=None, description="values for the sample rendering (default: 10 digits each)"
    )
    essential: bool = Field(
        default=False, description="sent even to customers who opted out: security alerts only"
    )


class Rendering(BaseModel):
    text: str
    encoding: str
    segments: int


class TemplateOut(BaseModel):
    name: str
    text_en: str
    text_ru: str
    parameters: list[str]
    sample: dict[str, str] | None
    essential: bool
    sample_rendering: dict[str, Rendering] = Field(
        description="each language rendered with the sample values"
    )
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str


def template_out(template: Template) -> TemplateOut:
    return TemplateOut(
        name=template.name,
        text_en=template.texts["en"],
        text_ru=template.texts["ru"],
        parameters=list(template.parameters),
        sample=template.sample,
        essential=template.essential,
        sample_rendering={
            language: Rendering(text=r.text, encoding=r.encoding, segments=r.segments)
            for language, r in template.renderings().items()
        },
        created_at=template.created_at,
        updated_at=template.updated_at,
        updated_by=template.updated_by,
    )


@router.get(
    "/templates",
    response_model=list[TemplateOut],
    summary="All templates",
    responses=responses(401, 403, 429),
)
async def all_templates(
    context: Context, _token: Annotated[TokenInfo, Depends(require("templates:read"))]
) -> list[TemplateOut]:
    async with context.db.read() as conn:
        found = await conn.run_sync(list_templates)
    return [template_out(t) for t in found]


@router.get(
    "/templates/{name}",
    response_model=TemplateOut,
    summary="One template",
    responses=responses(401, 403, 404, 422, 429),
)
async def one_template(
    name: TemplateName, context: Context, _token: Annotated[TokenInfo, Depends(require("templates:read"))]
) -> TemplateOut:
    async with context.db.read() as conn:
        found = await conn.run_sync(lambda sync: get_template(sync, name))
    if found is None:
        raise ProblemError("not-found", f"there is no template named {name!r}")
    return template_out(found)


@router.put(
    "/templates/{name}",
    response_model=TemplateOut,
    summary="Create or replace a template",
    responses={
        201: {"model": TemplateOut, "description": "Created."},
        **responses(400, 401, 403, 422, 429),
    },
)
async def put_template(
    name: TemplateName,
    body: TemplateIn,
    context: Context,
    token: Annotated[TokenInfo, Depends(require("templates:write"))],
) -> JSONResponse:
    def save(conn: Connection) -> tuple[Template, bool]:
        return save_template(
            conn,
            name,
            {"en": body.text_en, "ru": body.text_ru},
            body.parameters,
            sample=body.sample,
            essential=body.essential,
            actor=f"api:{token.name}",
        )

    try:
        try:
            template, created = await context.db.run(save)
        except IntegrityError:  # created at the same moment by another request: replace it
            template, created = await context.db.run(save)
    except InvalidTemplate as exc:
        errors = [FieldError(field=_body_field(p.field), message=p.message) for p in exc.problems]
        raise ProblemError(
            "invalid-template", "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors
        ) from None
    return JSONResponse(template_out(template).model_dump(mode="json"), status_code=201 if created else 200)


def _body_field(field: str) -> str:
    return "path.name" if field == "name" else f"body.{field}"


@router.delete(
    "/templates/{name}",
    status_code=204,
    summary="Delete a template",
    responses=responses(401, 403, 404, 422, 429),
)
async def remove_template(
    name: TemplateName, context: Context, _token: Annotated[TokenInfo, Depends(require("templates:write"))]
) -> Response:
    if not await context.db.run(lambda conn: delete_template(conn, name)):
        raise ProblemError("not-found", f"there is no template named {name!r}")
    return Response(status_code=204)
