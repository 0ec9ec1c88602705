"""Campaigns through the API: validated at creation, cost shown, state changes as problems when refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from smsline.db.schema import campaign_recipients, outbox
from tests.api.conftest import Api, problem_of
from tests.campaigns.conftest import add_customers, phone_of

BODY: dict[str, Any] = {
    "name": "Spring tariff",
    "text": "Dear {name}, our spring tariff is here.",
    "text_ru": "{name}, у нас весенний тариф.",
    "audience": {"type": "all"},
    "tps": 50,
}


async def test_create_shows_audience_cost_and_sample_then_lists_and_gets(api: Api) -> None:
    await add_customers(api.db.engine, 4)
    await add_customers(api.db.engine, 2, first=10, language="ru")
    await add_customers(api.db.engine, 1, first=20, sms_enabled=False)
    token = await api.token("campaigns:write", "campaigns:read")

    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(token))
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["state"] == "draft"
    assert campaign["total"] == 6  # the opted-out customer is not in "all"
    assert campaign["quiet_hours"] == {"start": "09:00", "end": "22:00"}
    assert campaign["sample_rendering"]["en"] == {
        "text": "Dear Ivan Petrov, our spring tariff is here.",
        "encoding": "gsm7",
        "segments": 1,
    }
    assert campaign["sample_rendering"]["ru"]["encoding"] == "ucs2"
    assert campaign["estimated_segments"] == 6
    assert campaign["created_by"].startswith("api:")

    listed = await api.client.get("/api/v1/campaigns", headers=api.auth(token))
    assert [c["id"] for c in listed.json()] == [campaign["id"]]
    drafts = await api.client.get("/api/v1/campaigns?state=running", headers=api.auth(token))
    assert drafts.json() == []
    got = await api.client.get(f"/api/v1/campaigns/{campaign['id']}", headers=api.auth(token))
    assert got.status_code == 200
    assert got.json()["progress"]["total"] == 6
    assert got.json()["progress"]["pending"] == 6
    assert [e["action"] for e in got.json()["events"]] == ["create", "audience"]


async def test_a_list_audience_reports_unknown_entries_and_collapses_duplicates(api: Api) -> None:
    await add_customers(api.db.engine, 3)
    token = await api.token("campaigns:write")
    body = BODY | {
        "audience": {
            "type": "list",
            "customer_ids": ["c0", "c0", "c1", "ghost"],
            "phones": [phone_of(1), phone_of(2), "+79990001122", "x"],
        }
    }
    response = await api.client.post("/api/v1/campaigns", json=body, headers=api.auth(token))
    assert response.status_code == 201, response.text
    campaign = response.json()
    assert campaign["total"] == 3
    assert campaign["unknown_count"] == 3
    assert {u["value"]: u["reason"] for u in campaign["unknown"]} == {
        "ghost": "no customer has this id",
        "+79990001122": "no customer has this phone",
        "x": "not a phone number",
    }
    async with api.db.engine.connect() as conn:
        count = (
            await conn.execute(
                select(func.count())
                .select_from(campaign_recipients)
                .where(campaign_recipients.c.campaign == campaign["id"])
            )
        ).scalar_one()
    assert count == 3


async def test_invalid_campaigns_are_4xx_problems_naming_the_field(api: Api) -> None:
    token = await api.token("campaigns:write")
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        (BODY | {"text": "Hi {nickname}"}, 422, "invalid-campaign", "body.text"),
        (BODY | {"text_ru": "Привет {balance}"}, 422, "invalid-campaign", "body.text_ru"),
        (BODY | {"text": "Hi {name"}, 422, "invalid-campaign", "body.text"),
        (BODY | {"audience": {"type": "everyone"}}, 422, "validation-failed", "body.audience"),
        (BODY | {"audience": {"type": "filter"}}, 422, "invalid-campaign", "body.audience"),
        (
            BODY | {"audience": {"type": "filter", "timezones": ["Mars/Olympus"]}},
            422,
            "invalid-campaign",
            "body.audience.timezones.0",
        ),
        (BODY | {"audience": {"type": "list"}}, 422, "invalid-campaign", "body.audience"),
        (BODY | {"tps": 0}, 422, "validation-failed", "body.tps"),
        (BODY | {"quiet_hours": {"start": "9am"}}, 422, "validation-failed", "body.quiet_hours"),
        (
            BODY | {"quiet_hours": {"start": "24:30", "end": "22:00"}},
            422,
            "invalid-campaign",
            "body.quiet_hours",
        ),
        (BODY | {"start_at": "2026-03-10T09:00:00"}, 422, "validation-failed", "body.start_at"),
        ({k: v for k, v in BODY.items() if k != "audience"}, 422, "validation-failed", "body.audience"),
    ]
    for body, status, kind, field in cases:
        response = await api.client.post("/api/v1/campaigns", json=body, headers=api.auth(token))
        assert response.status_code == status, (body, response.text)
        problem = problem_of(response)
        assert problem["type"] == f"/api/problems/{kind}", response.text
        assert any(e["field"].startswith(field) for e in problem["errors"]), (field, problem)
    bad_json = await api.client.post(
        "/api/v1/campaigns", content=b"{", headers=api.auth(token) | {"content-type": "application/json"}
    )
    assert bad_json.status_code == 400


async def test_state_changes_and_refusals(api: Api) -> None:
    await add_customers(api.db.engine, 5)
    token = await api.token("campaigns:write", "campaigns:read")
    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(token))
    campaign_id = created.json()["id"]

    async def post(action: str, cid: int = campaign_id) -> Any:
        return await api.client.post(f"/api/v1/campaigns/{cid}/{action}", headers=api.auth(token))

    refused = await post("resume")
    assert refused.status_code == 409
    assert problem_of(refused)["type"] == "/api/problems/campaign-state-conflict"
    assert "it is draft" in problem_of(refused)["detail"]
    assert (await post("pause")).status_code == 409

    started = await post("start")
    assert started.status_code == 200
    assert started.json()["state"] == "running"
    assert (await post("start")).status_code == 409
    assert (await post("pause")).json()["state"] == "paused"
    assert (await post("resume")).json()["state"] == "running"
    cancelled = await post("cancel")
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["progress"]["cancelled"] == 5
    assert cancelled.json()["finished_at"] is not None
    assert (await post("cancel")).status_code == 409
    assert [(e["action"], e["actor"].startswith("api:")) for e in cancelled.json()["events"]] == [
        ("create", True),
        ("audience", True),
        ("start", True),
        ("pause", True),
        ("resume", True),
        ("cancel", True),
    ]
    missing = await post("start", 9999)
    assert missing.status_code == 404
    assert problem_of(missing)["type"] == "/api/problems/not-found"
    assert (await api.client.get("/api/v1/campaigns/9999", headers=api.auth(token))).status_code == 404


async def test_a_scheduled_start(api: Api) -> None:
    token = await api.token("campaigns:write")
    body = BODY | {"start_at": "2099-01-01T09:00:00+03:00"}
    created = await api.client.post("/api/v1/campaigns", json=body, headers=api.auth(token))
    campaign_id = created.json()["id"]
    started = await api.client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=api.auth(token))
    assert started.json()["state"] == "scheduled"
    paused = await api.client.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=api.auth(token))
    assert paused.status_code == 409


async def test_scopes(api: Api) -> None:
    reader = await api.token("campaigns:read")
    other = await api.token("notifications:send")
    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(reader))
    assert created.status_code == 403
    assert problem_of(created)["type"] == "/api/problems/forbidden"
    assert (await api.client.get("/api/v1/campaigns", headers=api.auth(other))).status_code == 403
    assert (await api.client.get("/api/v1/campaigns")).status_code == 401


async def test_test_send_queues_one_sms_outside_the_campaign(api: Api) -> None:
    await add_customers(api.db.engine, 1, language="ru")
    await add_customers(api.db.engine, 1, first=5, sms_enabled=False)
    token = await api.token("campaigns:write", "campaigns:read")
    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(token))
    campaign_id = created.json()["id"]
    path = f"/api/v1/campaigns/{campaign_id}/test"

    to_customer = await api.client.post(path, json={"phone": phone_of(0)}, headers=api.auth(token))
    to_stranger = await api.client.post(
        path, json={"phone": "8 903 111-22-33", "language": "en"}, headers=api.auth(token)
    )
    to_opted_out = await api.client.post(path, json={"phone": phone_of(5)}, headers=api.auth(token))
    bad_phone = await api.client.post(path, json={"phone": "call me"}, headers=api.auth(token))
    missing = await api.client.post(
        "/api/v1/campaigns/9999/test", json={"phone": phone_of(0)}, headers=api.auth(token)
    )

    assert to_customer.status_code == 200, to_customer.text
    assert to_customer.json()["text"] == "Name0, у нас весенний тариф."
    assert to_customer.json()["encoding"] == "ucs2"
    assert to_stranger.json()["text"] == "Dear Ivan Petrov, our spring tariff is here."
    assert to_stranger.json()["phone"] == "+79031112233"
    assert to_opted_out.json()["status"] == "suppressed"
    assert bad_phone.status_code == 422
    assert problem_of(bad_phone)["errors"][0]["field"] == "body.phone"
    assert missing.status_code == 404
    assert len(api.woken) == 2
    async with api.db.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.kind, outbox.c.priority, outbox.c.campaign))).all()
    assert sorted(tuple(r) for r in rows) == [("campaign_test", 5, None)] * 2
    got = await api.client.get(f"/api/v1/campaigns/{campaign_id}", headers=api.auth(token))
    assert got.json()["progress"]["sent"] == 0
    assert [e["action"] for e in got.json()["events"]][-2:] == ["test", "test"]


async def test_an_operator_opt_out_suppresses_pending_and_withdraws_queued_campaign_sms(api: Api) -> None:
    from smsline.campaigns.runner import CampaignRunner
    from smsline.campaigns.service import get_campaign
    from smsline.campaigns.texts import CompiledText

    await add_customers(api.db.engine, 4)
    token = await api.token("campaigns:write", "campaigns:read", "customers:write")
    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(token))
    campaign_id = created.json()["id"]
    await api.client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=api.auth(token))
    runner = CampaignRunner(api.db, api.context.settings)
    campaign = await api.db.run(lambda conn: get_campaign(conn, campaign_id))
    assert campaign is not None
    text = CompiledText.of(campaign.text, campaign.text_ru)
    # The first two recipients are queued in the outbox; the other two still pending.
    await api.db.run(
        lambda conn: runner.feed(conn, campaign_id, text, campaign.timezones, 2, campaign.created_at)
    )

    for customer_id in ("c0", "c3"):  # one queued, one pending
        response = await api.client.put(
            f"/api/v1/customers/{customer_id}/sms",
            json={"enabled": False, "actor": "operator:petrova"},
            headers=api.auth(token),
        )
        assert response.status_code == 200, response.text

    async with api.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(campaign_recipients.c.status, campaign_recipients.c.reason)
                .where(campaign_recipients.c.campaign == campaign_id)
                .order_by(campaign_recipients.c.id)
            )
        ).all()
        queued = (
            await conn.execute(select(outbox.c.destination).where(outbox.c.campaign == campaign_id))
        ).all()
    assert [tuple(r) for r in rows] == [
        ("suppressed", "opted_out"),
        ("queued", None),
        ("pending", None),
        ("suppressed", "opted_out"),
    ]
    assert [r.destination for r in queued] == [phone_of(1)]


async def test_an_import_that_turns_sms_off_suppresses_pending_recipients(api: Api) -> None:
    await add_customers(api.db.engine, 3)
    token = await api.token("campaigns:write", "campaigns:read", "customers:write")
    created = await api.client.post("/api/v1/campaigns", json=BODY, headers=api.auth(token))
    campaign_id = created.json()["id"]
    csv = "customer_id,phone,personal_code,login,sms_enabled\n" + f"c1,{phone_of(1)},1234,login1,false\n"
    headers = api.auth(token) | {"content-type": "text/csv"}
    imported = await api.client.post("/api/v1/customers/import", content=csv.encode(), headers=headers)
    assert imported.status_code == 200, imported.text
    assert imported.json()["updated"] == 1
    got = await api.client.get(f"/api/v1/campaigns/{campaign_id}", headers=api.auth(token))
    assert got.json()["progress"]["suppressed"] == 1
    assert got.json()["progress"]["pending"] == 2
