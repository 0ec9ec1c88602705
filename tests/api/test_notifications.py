"""POST /api/v1/notifications: queued or suppressed, templates in the customer's language,
essential templates, idempotency (also under concurrency), and bad requests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select

from smsline.db.schema import notifications, outbox
from tests.api.conftest import CARD_READY, Api, problem_of
from tests.line.conftest import add_customer

NEW_SIGN_IN = {
    "text_en": "New sign-in to your account from {city}. Not you? Call us.",
    "text_ru": "Новый вход в ваш аккаунт из города {city}. Это не вы? Позвоните нам.",
    "parameters": ["city"],
    "essential": True,
}


async def put_template(api: Api, name: str, body: dict[str, Any]) -> None:
    token = await api.token("templates:write")
    response = await api.client.put(f"/api/v1/templates/{name}", json=body, headers=api.auth(token))
    assert response.status_code in (200, 201), response.text


async def notify(api: Api, token: Any, body: dict[str, Any], key: str | None = None) -> Any:
    headers = api.auth(token) | {"Idempotency-Key": key or str(uuid.uuid4())}
    return await api.client.post("/api/v1/notifications", json=body, headers=headers)


async def outbox_rows(api: Api) -> list[Any]:
    async with api.db.engine.connect() as conn:
        return list((await conn.execute(select(outbox).order_by(outbox.c.id))).mappings())


async def test_a_notification_is_queued_in_the_customers_language(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", language="ru")
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")

    response = await notify(
        api, token, {"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "4242"}}
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["customer_id"] == "C-1"
    assert (body["language"], body["encoding"], body["segments"]) == ("ru", "ucs2", 1)
    [row] = await outbox_rows(api)
    assert row["id"] == body["message_id"]
    assert row["text"] == "Ваша карта *4242 готова."
    assert (row["destination"], row["sender"], row["status"]) == ("+79161234567", "SCSERV", "queued")
    assert (row["kind"], row["priority"]) == ("notification", 5)
    assert api.woken, "the dispatcher is woken for the new message"


async def test_a_customer_is_found_by_phone_in_any_usual_form(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", language="en")
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")

    response = await notify(
        api, token, {"phone": "8 (916) 123-45-67", "template": "card_ready", "parameters": {"last4": 4242}}
    )

    assert response.status_code == 202, response.text
    assert response.json()["customer_id"] == "C-1"
    [row] = await outbox_rows(api)
    assert row["text"] == "Your card ending 4242 is ready."


async def test_opted_out_and_unknown_customers_are_suppressed(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", sms_enabled=False)
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")

    opted_out = await notify(
        api, token, {"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "1"}}
    )
    unknown = await notify(
        api, token, {"phone": "+79035550000", "template": "card_ready", "parameters": {"last4": "1"}}
    )

    assert opted_out.status_code == 200
    assert opted_out.json() | {"created_at": None} == opted_out.json() | {
        "message_id": None,
        "status": "suppressed",
        "reason": "opted_out",
        "created_at": None,
    }
    assert unknown.status_code == 200
    assert (unknown.json()["status"], unknown.json()["reason"]) == ("suppressed", "unknown_customer")
    assert unknown.json()["phone"] == "+79035550000"
    assert await outbox_rows(api) == []
    assert not api.woken


async def test_an_essential_template_reaches_an_opted_out_customer(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", sms_enabled=False)
    await put_template(api, "new_sign_in", NEW_SIGN_IN)
    token = await api.token("notifications:send")

    response = await notify(
        api, token, {"customer_id": "C-1", "template": "new_sign_in", "parameters": {"city": "Kazan"}}
    )

    assert response.status_code == 202, response.text
    assert response.json()["essential"] is True
    [row] = await outbox_rows(api)
    assert row["text"].startswith("New sign-in to your account from Kazan.")


async def test_a_repeated_key_gets_the_first_answer_and_no_second_sms(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567")
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")
    body = {"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "4242"}}

    first = await notify(api, token, body, key="order-17")
    again = await notify(api, token, body, key="order-17")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await outbox_rows(api)) == 1

    other_body = body | {"parameters": {"last4": "0000"}}
    reused = await notify(api, token, other_body, key="order-17")
    assert reused.status_code == 422
    assert problem_of(reused)["type"] == "/api/problems/idempotency-key-reused"
    assert len(await outbox_rows(api)) == 1

    # Keys belong to their token: another system may use the same key for its own notification.
    other_token = await api.token("notifications:send")
    theirs = await notify(api, other_token, body, key="order-17")
    assert theirs.status_code == 202
    assert theirs.json()["message_id"] != first.json()["message_id"]


async def test_concurrent_requests_with_one_key_send_exactly_one_sms(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567")
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")
    body = {"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "4242"}}

    answers = await asyncio.gather(*(notify(api, token, body, key="same-key") for _ in range(8)))

    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["message_id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    assert len(await outbox_rows(api)) == 1
    async with api.db.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(notifications)) == 1


async def test_a_literal_text_needs_its_own_scope(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567")
    template_only = await api.token("notifications:send")
    both = await api.token("notifications:send", "notifications:send_text")
    body = {"customer_id": "C-1", "text": "Your branch is closed on Monday."}

    refused = await notify(api, template_only, body)
    accepted = await notify(api, both, body)

    assert refused.status_code == 403
    assert "notifications:send_text" in problem_of(refused)["detail"]
    assert accepted.status_code == 202
    [row] = await outbox_rows(api)
    assert row["text"] == "Your branch is closed on Monday."


async def test_template_problems_are_refused_naming_the_field(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567")
    await put_template(api, "card_ready", CARD_READY)
    token = await api.token("notifications:send")

    unknown = await notify(api, token, {"customer_id": "C-1", "template": "no_such", "parameters": {}})
    missing = await notify(api, token, {"customer_id": "C-1", "template": "card_ready"})
    extra = await notify(
        api,
        token,
        {"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "1", "amount": "5"}},
    )

    assert unknown.status_code == 422
    assert problem_of(unknown)["type"] == "/api/problems/unknown-template"
    assert problem_of(unknown)["errors"][0]["field"] == "body.template"
    assert missing.status_code == 422
    assert problem_of(missing)["errors"] == [
        {"field": "body.parameters.last4", "message": "is required by the template"}
    ]
    assert extra.status_code == 422
    assert problem_of(extra)["errors"][0]["field"] == "body.parameters.amount"
    assert await outbox_rows(api) == []


async def test_bad_requests_get_a_4xx_that_names_the_field(api: Api) -> None:
    token = await api.token("notifications:send")

    no_key = await api.client.post(
        "/api/v1/notifications", json={"customer_id": "C-1", "template": "x"}, headers=api.auth(token)
    )
    both = await notify(api, token, {"customer_id": "C-1", "phone": "+79161234567", "template": "x"})
    bad_phone = await notify(api, token, {"phone": "12ab", "template": "x"})
    bad_url = await notify(api, token, {"customer_id": "C-1", "template": "x", "status_callback": "ftp://x"})
    not_json = await api.client.post(
        "/api/v1/notifications",
        content=b"{not json",
        headers=api.auth(token) | {"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    unknown_field = await notify(api, token, {"customer_id": "C-1", "template": "x", "colour": "red"})

    assert no_key.status_code == 400
    assert problem_of(no_key)["errors"][0]["field"] == "header.idempotency-key"
    assert both.status_code == 422
    assert "exactly one of customer_id and phone" in problem_of(both)["detail"]
    assert bad_phone.status_code == 422
    assert problem_of(bad_phone)["errors"][0]["field"] == "body.phone"
    assert bad_url.status_code == 422
    assert problem_of(bad_url)["errors"][0]["field"] == "body.status_callback"
    assert not_json.status_code == 400
    assert problem_of(not_json)["type"] == "/api/problems/invalid-json"
    assert unknown_field.status_code == 422
    assert problem_of(unknown_field)["errors"][0]["field"] == "body.colour"
    wrong_type = await api.client.post(
        "/api/v1/notifications",
        content=b"customer_id=C-1",
        headers=api.auth(token)
        | {"Idempotency-Key": "k2", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415
    assert problem_of(wrong_type)["type"] == "/api/problems/unsupported-media-type"


async def test_the_token_is_checked_before_the_body(api: Api) -> None:
    """A caller without a valid token learns nothing about the body, not even that it is bad."""
    reader = await api.token("messages:read")

    anonymous = await api.client.post("/api/v1/notifications", json={"colour": "red"})
    unscoped = await api.client.post(
        "/api/v1/notifications", json={"colour": "red"}, headers=api.auth(reader) | {"Idempotency-Key": "k"}
    )

    assert anonymous.status_code == 401
    assert problem_of(anonymous)["type"] == "/api/problems/unauthorized"
    assert unscoped.status_code == 403
    assert problem_of(unscoped)["type"] == "/api/problems/forbidden"


async def test_the_openapi_document_describes_the_token_the_key_and_the_body(api: Api) -> None:
    document = (await api.client.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/v1/notifications"]["post"]

    assert operation["security"] == [{"HTTPBearer": []}]
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    [key] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert (key["name"], key["required"]) == ("Idempotency-Key", True)
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"customer_id", "phone", "template", "parameters", "text", "status_callback"} <= set(
        body["properties"]
    )
    assert body["additionalProperties"] is False


async def test_an_oversized_body_and_other_methods_get_problems_too(api: Api) -> None:
    """The endpoint's own fast lane answers like the rest of the API at its edges."""
    token = await api.token("notifications:send")
    huge = await api.client.post(
        "/api/v1/notifications",
        content=b'{"customer_id": "' + b"C" * 70_000 + b'", "template": "x"}',
        headers=api.auth(token) | {"Idempotency-Key": "big", "Content-Type": "application/json"},
    )
    listing = await api.client.get("/api/v1/notifications", headers=api.auth(token))

    assert huge.status_code == 413
    assert problem_of(huge)["type"] == "/api/problems/payload-too-large"
    assert listing.status_code == 405
    assert problem_of(listing)["type"] == "/api/problems/method-not-allowed"
