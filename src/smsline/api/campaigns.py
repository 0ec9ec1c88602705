"""Mass texting: ``/api/v1/campaigns`` — create, list, get (with progress), start, pause,
resume, cancel, and a test send to one phone."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from smsline.api.auth import Context, require
from smsline.api.problems import FieldError, ProblemError, responses
from smsline.campaigns.service import (
    Audience,
    Campaign,
    CampaignNotFound,
    Created,
    Event,
    InvalidCampaign,
    NewCampaign,
    Progress,
    StateConflict,
    act,
    campaign_history,
    create_campaign,
    get_campaign,
    list_campaigns,
    progress,
    send_sample,
)
from smsline.domain.msisdn import InvalidMsisdn, normalise_msisdn
from smsline.domain.quiet_hours import Window, format_hhmm, parse_hhmm
from smsline.domain.templates import MAX_TEXT_LENGTH
from smsline.notify.tokens import TokenInfo

router = APIRouter(prefix="/api/v1", tags=["campaigns"])

State = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
CampaignId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the campaign's id")]
TagName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,;]+$")]
HHMM = Annotated[str, Field(pattern=r"^([01]?\d|2[0-4]):[0-5]\d$", examples=["09:00"])]


class AllCustomers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["all"] = Field(description="every customer with SMS turned on")


class CustomerFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["filter"] = Field(description="customers with SMS on who match every given criterion")
    tags: list[TagName] = Field(default_factory=list, max_length=100, description="any of these tags")
    languages: list[Literal["en", "ru"]] = Field(default_factory=list, max_length=2)
    timezones: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=100, description="IANA zones, e.g. Asia/Vladivostok"
    )


class CustomerList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["list"] = Field(description="an uploaded list of customer ids and/or phones")
    customer_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=1_000_000
    )
    phones: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=1_000_000
    )


AudienceIn = Annotated[AllCustomers | CustomerFilter | CustomerList, Field(discriminator="type")]


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: HHMM = Field(description="local time the window opens")
    end: HHMM = Field(description="local time it closes; equal to start: always open")


class CampaignIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Spring tariff",
                    "text": "Dear {name}, our spring tariff is here. Reply STOP? Text CLIENT sms stop.",
                    "text_ru": "{name}, у нас новый весенний тариф. Отписаться: CLIENT sms stop.",
                    "audience": {"type": "filter", "tags": ["vip"]},
                    "tps": 50,
                    "quiet_hours": {"start": "09:00", "end": "22:00"},
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description="placeholders: {name}, {customer_id}, {phone}; {{ and }} for braces",
    )
    text_ru: str | None = Field(
        default=None, max_length=MAX_TEXT_LENGTH, description="for customers whose language is ru"
    )
    audience: AudienceIn
    start_at: AwareDatetime | None = Field(default=None, description="not before this time (with zone)")
    tps: int | None = Field(default=None, ge=1, le=10_000, description="SMS per second at most")
    quiet_hours: QuietHours = Field(
        default_factory=lambda: QuietHours(start="09:00", end="22:00"),
        description="the window in each recipient's own time zone (from their profile)",
    )


class Rendering(BaseModel):
    text: str
    encoding: str
    segments: int


class ProgressOut(BaseModel):
    total: int
    pending: int = Field(description="not yet handed to the outbox (their turn or quiet hours)")
    queued: int = Field(description="in the outbox, not yet submitted")
    sent: int = Field(description="accepted by the SMSC")
    delivered: int
    failed: int
    suppressed: int = Field(description="opted out: never sent")
    cancelled: int
    remaining: int
    rate: float = Field(description="SMS per second, lately")
    eta_seconds: float | None


class EventOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    detail: str | None


class UnknownOut(BaseModel):
    value: str
    reason: str


class CampaignOut(BaseModel):
    id: int
    name: str
    text: str
    text_ru: str | None
    audience: dict[str, Any]
    start_at: dt.datetime | None
    tps: int | None
    quiet_hours: QuietHours
    state: str = Field(description="draft | scheduled | running | paused | completed | cancelled")
    total: int | None = Field(description="recipients; null while the audience is being expanded")
    sample_rendering: dict[str, Rendering] = Field(description="each text rendered for a sample customer")
    estimated_segments: int | None = Field(description="the cost: recipients × segments of their text")
    created_at: dt.datetime
    created_by: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: ProgressOut | None = None
    events: list[EventOut] | None = None
    unknown: list[UnknownOut] | None = Field(
        default=None, description="listed ids or phones that name no customer (at most 1000 shown)"
    )
    unknown_count: int | None = None


class TestSendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str = Field(min_length=1, max_length=32)
    language: Literal["en", "ru"] | None = Field(default=None, description="default: the customer's")


class TestSendOut(BaseModel):
    status: Literal["queued", "suppressed"]
    phone: str
    text: str
    encoding: str
    segments: int
    message_id: int | None
    reason: str | None


def campaign_out(
    campaign: Campaign,
    *,
    progress_of: Progress | None = None,
    events: list[Event] | None = None,
    created: Created | None = None,
) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        text=campaign.text,
        text_ru=campaign.text_ru,
        audience=campaign.audience,
        start_at=campaign.start_at,
        tps=campaign.tps,
        quiet_hours=QuietHours(
            start=format_hhmm(campaign.window.start), end=format_hhmm(campaign.window.end)
        ),
        state=campaign.state,
        total=campaign.total,
        sample_rendering={
            language: Rendering(text=r.text, encoding=r.encoding, segments=r.segments)
            for language, r in campaign.renderings().items()
        },
        estimated_segments=campaign.estimated_segments(),
        created_at=campaign.created_at,
        created_by=campaign.created_by,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        progress=ProgressOut(
            total=progress_of.total,
            pending=progress_of.pending,
            queued=progress_of.queued,
            sent=progress_of.sent,
            delivered=progress_of.delivered,
            failed=progress_of.failed,
            suppressed=progress_of.suppressed,
            cancelled=progress_of.cancelled,
            remaining=progress_of.remaining,
            rate=round(progress_of.rate, 2),
            eta_seconds=None if progress_of.eta_seconds is None else round(progress_of.eta_seconds, 1),
        )
        if progress_of is not None
        else None,
        events=[EventOut(at=e.at, actor=e.actor, action=e.action, detail=e.detail) for e in events]
        if events is not None
        else None,
        unknown=[UnknownOut(value=u.value, reason=u.reason) for u in created.unknown] if created else None,
        unknown_count=created.unknown_count if created else None,
    )


def _actor(token: TokenInfo) -> str:
    return f"api:{token.name}"


def _new_campaign(body: CampaignIn) -> NewCampaign:
    audience = body.audience
    if isinstance(audience, AllCustomers):
        chosen = Audience("all")
    elif isinstance(audience, CustomerFilter):
        chosen = Audience(
            "filter",
            tags=tuple(audience.tags),
            languages=tuple(audience.languages),
            timezones=tuple(audience.timezones),
        )
    else:
        chosen = Audience("list", customer_ids=audience.customer_ids, phones=audience.phones)
    errors: list[FieldError] = []
    window = Window()
    try:
        window = Window(parse_hhmm(body.quiet_hours.start), parse_hhmm(body.quiet_hours.end))
    except ValueError as exc:
        errors.append(FieldError(field="body.quiet_hours", message=str(exc)))
    if errors:
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ProblemError("invalid-campaign", detail, errors=errors)
    return NewCampaign(
        name=body.name,
        text=body.text,
        text_ru=body.text_ru,
        audience=chosen,
        start_at=body.start_at,
        tps=body.tps,
        window=window,
    )


def _invalid(exc: InvalidCampaign) -> ProblemError:
    errors = [FieldError(field=f"body.{p.field}", message=p.message) for p in exc.problems]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ProblemError("invalid-campaign", detail, errors=errors)


@router.post(
    "/campaigns",
    status_code=201,
    response_model=CampaignOut,
    summary="Create a campaign (a draft); its audience is expanded at once",
    responses=responses(400, 401, 403, 422, 429),
)
async def create(
    body: CampaignIn, context: Context, token: Annotated[TokenInfo, Depends(require("campaigns:write"))]
) -> JSONResponse:
    new = _new_campaign(body)
    try:
        created = await create_campaign(
            context.db.run, new, actor=_actor(token), region=context.settings.default_region
        )
    except InvalidCampaign as exc:
        raise _invalid(exc) from None
    body_out = campaign_out(created.campaign, created=created)
    return JSONResponse(body_out.model_dump(mode="json"), status_code=201)


@router.get(
    "/campaigns",
    response_model=list[CampaignOut],
    summary="Campaigns, newest first",
    responses=responses(401, 403, 422, 429),
)
async def all_campaigns(
    context: Context,
    _token: Annotated[TokenInfo, Depends(require("campaigns:read"))],
    state: Annotated[list[State] | None, Query(description="only in these states")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CampaignOut]:
    async with context.db.read() as conn:
        found = await conn.run_sync(lambda sync: list_campaigns(sync, states=state or (), limit=limit))
    return [campaign_out(c) for c in found]


async def _load(context: Context, campaign_id: int) -> CampaignOut:
    def load(conn: Connection) -> CampaignOut | None:
        campaign = get_campaign(conn, campaign_id)
        if campaign is None:
            return None
        return campaign_out(
            campaign, progress_of=progress(conn, campaign), events=campaign_history(conn, campaign_id)
        )

    async with context.db.read() as conn:
        found = await conn.run_sync(load)
    if found is None:
        raise ProblemError("not-found", f"there is no campaign {campaign_id}")
    return found


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignOut,
    summary="A campaign with its progress and history",
    responses=responses(401, 403, 404, 422, 429),
)
async def one_campaign(
    campaign_id: CampaignId,
    context: Context,
    _token: Annotated[TokenInfo, Depends(require("campaigns:read"))],
) -> CampaignOut:
    return await _load(context, campaign_id)


async def _act(context: Context, campaign_id: int, action: str, token: TokenInfo) -> CampaignOut:
    try:
        await act(
            context.db.run, campaign_id, action, actor=_actor(token), clock_now=context.campaign_clock()
        )
    except CampaignNotFound:
        raise ProblemError("not-found", f"there is no campaign {campaign_id}") from None
    except StateConflict as exc:
        raise ProblemError("campaign-state-conflict", str(exc)) from None
    context.on_campaigns_changed()
    return await _load(context, campaign_id)


_ACTIONS = {
    "start": "Start a draft (scheduled when its start time is ahead)",
    "pause": "Pause a running campaign: no new SMS go out within a second",
    "resume": "Resume a paused campaign where it stopped",
    "cancel": "Cancel: recipients not yet sent become cancelled",
}


def _action_endpoint(action: str) -> None:
    async def endpoint(
        campaign_id: CampaignId,
        context: Context,
        token: Annotated[TokenInfo, Depends(require("campaigns:write"))],
    ) -> CampaignOut:
        return await _act(context, campaign_id, action, token)

    endpoint.__name__ = f"{action}_campaign"
    router.add_api_route(
        f"/campaigns/{{campaign_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=CampaignOut,
        summary=_ACTIONS[action],
        responses=responses(401, 403, 404, 409, 422, 429),
    )


for _action in _ACTIONS:
    _action_endpoint(_action)


@router.post(
    "/campaigns/{campaign_id}/test",
    response_model=TestSendOut,
    summary="Send the campaign's text to one phone to try it (not part of the campaign)",
    responses=responses(400, 401, 403, 404, 422, 429),
)
async def test_send(
    campaign_id: CampaignId,
    body: TestSendIn,
    context: Context,
    token: Annotated[TokenInfo, Depends(require("campaigns:write"))],
) -> TestSendOut:
    try:
        phone = normalise_msisdn(body.phone, context.settings.default_region)
    except InvalidMsisdn as exc:
        raise ProblemError(
            "validation-failed", str(exc), errors=[FieldError(field="body.phone", message=str(exc))]
        ) from None
    try:
        sent = await context.db.run(
            lambda conn: send_sample(
                conn,
                campaign_id,
                phone,
                sender=context.settings.sender,
                actor=_actor(token),
                language=body.language,
            )
        )
    except CampaignNotFound:
        raise ProblemError("not-found", f"there is no campaign {campaign_id}") from None
    if sent.status == "queued":
        context.on_queued()
    return TestSendOut(
        status=sent.status,
        phone=sent.phone,
        text=sent.text,
        encoding=sent.rendering.encoding,
        segments=sent.rendering.segments,
        message_id=sent.message_id,
        reason=sent.reason,
    )
