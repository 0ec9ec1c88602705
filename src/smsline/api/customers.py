"""Customers: ``/api/v1/customers`` — get, create or update, the SMS preference, bulk import.

Creating and updating follow exactly the rules of ``smsline customers import`` (the same code
validates and writes): phones in any usual form become E.164, optional fields left out keep their
current value, a change of ``sms_enabled`` is a consent event. Through the API the consent event's
channel is ``api`` and its actor names the token and the ``actor`` the caller gives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from smsline.api.auth import Context, require
from smsline.api.problems import FieldError, ProblemError, responses
from smsline.campaigns.service import suppress_opted_out
from smsline.customers import InvalidCustomer, InvalidCustomerFile, apply_customer, import_customers
from smsline.db.schema import consent_events, customer_tags, customers
from smsline.notify.tokens import TokenInfo

router = APIRouter(prefix="/api/v1", tags=["customers"])

CONSENT_CHANNEL = "api"
MAX_IMPORT_BYTES = 50 * 1024 * 1024
CustomerId = Annotated[str, Path(min_length=1, max_length=64, description="the company's customer id")]
Actor = Annotated[
    str,
    Field(min_length=1, max_length=80, description="who made the change (an operator's login, a system)"),
]
TagName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,;]+$")]


class CustomerIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"phone": "+7 916 123-45-67", "personal_code": "1234", "login": "ivanov", "language": "ru"}
            ]
        },
    )

    phone: str = Field(min_length=1, max_length=32)
    personal_code: str = Field(min_length=1, max_length=64)
    login: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    language: Literal["en", "ru"] | None = None
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone, e.g. Europe/Moscow")
    tags: list[TagName] | None = Field(
        default=None, max_length=100, description="replaces the tags when given"
    )
    sms_enabled: bool | None = Field(default=None, description="a change is recorded as a consent event")
    actor: Actor | None = None


class SmsPreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    actor: Actor


class ConsentEvent(BaseModel):
    sms_enabled: bool
    channel: str
    actor: str
    at: dt.datetime


class CustomerOut(BaseModel):
    customer_id: str
    phone: str
    personal_code: str
    login: str
    name: str | None
    language: str
    timezone: str
    tags: list[str]
    sms_enabled: bool
    consent: list[ConsentEvent] = Field(description="opt-outs and opt-ins, newest first")
    created_at: dt.datetime
    updated_at: dt.datetime


class RejectedRow(BaseModel):
    line: int
    reason: str


class ImportReportOut(BaseModel):
    imported: bool = Field(description="false when all_or_nothing rolled everything back")
    created: int
    updated: int
    unchanged: int
    rejected: list[RejectedRow]


def _load(conn: Connection, customer_id: str) -> CustomerOut | None:
    row = conn.execute(select(customers).where(customers.c.customer_id == customer_id)).mappings().first()
    if row is None:
        return None
    tags = (
        conn.execute(
            select(customer_tags.c.tag)
            .where(customer_tags.c.customer == row["id"])
            .order_by(customer_tags.c.tag)
        )
        .scalars()
        .all()
    )
    events = (
        conn.execute(
            select(consent_events)
            .where(consent_events.c.customer == row["id"])
            .order_by(consent_events.c.at.desc(), consent_events.c.id.desc())
            .limit(100)
        )
        .mappings()
        .all()
    )
    return CustomerOut(
        customer_id=row["customer_id"],
        phone=row["phone"],
        personal_code=row["personal_code"],
        login=row["login"],
        name=row["name"],
        language=row["language"],
        timezone=row["timezone"],
        tags=list(tags),
        sms_enabled=row["sms_enabled"],
        consent=[
            ConsentEvent(sms_enabled=e["sms_enabled"], channel=e["channel"], actor=e["actor"], at=e["at"])
            for e in events
        ],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _actor(token: TokenInfo, actor: str | None) -> str:
    return f"api:{token.name}" + (f":{actor}" if actor else "")


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="A customer, with their SMS preference and consent history",
    responses=responses(401, 403, 404, 422, 429),
)
async def get_customer(
    customer_id: CustomerId,
    context: Context,
    _token: Annotated[TokenInfo, Depends(require("customers:read"))],
) -> CustomerOut:
    async with context.db.read() as conn:
        found = await conn.run_sync(lambda sync: _load(sync, customer_id))
    if found is None:
        raise ProblemError("not-found", f"there is no customer {customer_id!r}")
    return found


def _field_of(reason: str) -> str:
    first = reason.split(":", 1)[0].split(" ", 1)[0]
    return f"body.{first}" if first in CustomerIn.model_fields else "body"


@router.put(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="Create or update a customer",
    responses={
        201: {"model": CustomerOut, "description": "Created."},
        **responses(400, 401, 403, 422, 429),
    },
)
async def put_customer(
    customer_id: CustomerId,
    body: CustomerIn,
    context: Context,
    token: Annotated[TokenInfo, Depends(require("customers:write"))],
) -> JSONResponse:
    values = {
        "customer_id": customer_id,
        "phone": body.phone,
        "personal_code": body.personal_code,
        "login": body.login,
    }
    for name in ("name", "language", "timezone"):
        value = getattr(body, name)
        if value is not None:
            values[name] = value
    if body.tags is not None:
        values["tags"] = " ".join(body.tags)
    if body.sms_enabled is not None:
        values["sms_enabled"] = "true" if body.sms_enabled else "false"
    settings = context.settings
    actor = _actor(token, body.actor)

    def store(conn: Connection) -> tuple[str, CustomerOut | None]:
        outcome = apply_customer(
            conn,
            values,
            default_region=settings.default_region,
            default_language=settings.default_language,
            default_timezone=settings.default_timezone,
            actor=actor,
            channel=CONSENT_CHANNEL,
        )
        return outcome, _load(conn, customer_id)

    try:
        outcome, stored = await context.db.run(store)
    except InvalidCustomer as exc:
        reasons = str(exc).split("; ")
        errors = [FieldError(field=_field_of(reason), message=reason) for reason in reasons]
        raise ProblemError("invalid-customer", str(exc), errors=errors) from None
    except IntegrityError:
        raise ProblemError(
            "invalid-customer",
            "the phone or customer id was taken by another customer at the same moment; try again",
        ) from None
    assert stored is not None
    return JSONResponse(stored.model_dump(mode="json"), status_code=201 if outcome == "created" else 200)


@router.put(
    "/customers/{customer_id}/sms",
    response_model=CustomerOut,
    summary="Turn a customer's SMS notifications on or off (a consent event)",
    responses=responses(400, 401, 403, 404, 422, 429),
)
async def put_sms_preference(
    customer_id: CustomerId,
    body: SmsPreferenceIn,
    context: Context,
    token: Annotated[TokenInfo, Depends(require("customers:write"))],
) -> CustomerOut:
    actor = _actor(token, body.actor)[:128]

    def change(conn: Connection) -> CustomerOut | None:
        row = conn.execute(
            select(customers.c.id, customers.c.sms_enabled).where(customers.c.customer_id == customer_id)
        ).first()
        if row is None:
            return None
        if row.sms_enabled != body.enabled:
            now = dt.datetime.now(dt.UTC)
            conn.execute(
                customers.update()
                .where(customers.c.id == row.id)
                .values(sms_enabled=body.enabled, updated_at=now)
            )
            conn.execute(
                consent_events.insert().values(
                    customer=row.id, sms_enabled=body.enabled, channel=CONSENT_CHANNEL, actor=actor, at=now
                )
            )
            if not body.enabled:
                suppress_opted_out(conn, [row.id])
        return _load(conn, customer_id)

    found = await context.db.run(change)
    if found is None:
        raise ProblemError("not-found", f"there is no customer {customer_id!r}")
    return found


@router.post(
    "/customers/import",
    response_model=ImportReportOut,
    summary="Import customers from CSV (same rules as `smsline customers import`)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "customer_id,phone,personal_code,login,language\n"
                    "C-1001,+79161234567,1234,ivanov,ru\n",
                }
            },
        }
    },
    responses=responses(401, 403, 413, 415, 422, 429),
)
async def import_csv(
    request: Request,
    context: Context,
    token: Annotated[TokenInfo, Depends(require("customers:write"))],
    all_or_nothing: Annotated[bool, Query(description="import nothing if any row is invalid")] = False,
) -> ImportReportOut:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ("text/csv", "text/plain"):
        raise ProblemError("unsupported-media-type", "send the file as text/csv")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
        raise ProblemError("payload-too-large", f"at most {MAX_IMPORT_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="smsline-import-") as folder:
        path = FilePath(folder) / "customers.csv"
        size = 0
        with path.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_IMPORT_BYTES:
                    raise ProblemError("payload-too-large", f"at most {MAX_IMPORT_BYTES} bytes")
                await asyncio.to_thread(handle.write, chunk)
        settings = context.settings
        try:
            report = await import_customers(
                context.db.engine,
                path,
                all_or_nothing=all_or_nothing,
                default_region=settings.default_region,
                default_language=settings.default_language,
                default_timezone=settings.default_timezone,
                actor=_actor(token, None),
                channel=CONSENT_CHANNEL,
            )
        except InvalidCustomerFile as exc:
            raise ProblemError("invalid-customer-file", str(exc)) from None
    return ImportReportOut(
        imported=report.imported,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=[RejectedRow(line=r.line, reason=r.reason) for r in report.rejected],
    )
