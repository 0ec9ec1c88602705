"""GET /api/v1/messages/{id}."""

from __future__ import annotations

from tests.api.conftest import Api, problem_of
from tests.line.conftest import add_customer


async def test_a_queued_message_shows_its_status_and_history(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567")
    token = await api.token("notifications:send", "notifications:send_text", "messages:read")
    queued = await api.client.post(
        "/api/v1/notifications",
        json={"customer_id": "C-1", "text": "Hello", "status_callback": "http://127.0.0.1:9/cb"},
        headers=api.auth(token) | {"Idempotency-Key": "m-1"},
    )
    message_id = queued.json()["message_id"]

    response = await api.client.get(f"/api/v1/messages/{message_id}", headers=api.auth(token))

    assert response.status_code == 200
    message = response.json()
    assert (message["status"], message["kind"], message["phone"]) == (
        "queued",
        "notification",
        "+79161234567",
    )
    assert (message["text"], message["segments"], message["encoding"]) == ("Hello", 1, "gsm7")
    assert [change["status"] for change in message["history"]] == ["queued"]
    assert message["idempotency_key"] == "m-1"
    assert message["callback"] == {"state": "pending", "attempts": 0, "last_error": None}


async def test_an_unknown_or_malformed_id(api: Api) -> None:
    token = await api.token("messages:read")

    unknown = await api.client.get("/api/v1/messages/424242", headers=api.auth(token))
    malformed = await api.client.get("/api/v1/messages/abc", headers=api.auth(token))

    assert unknown.status_code == 404
    assert problem_of(unknown)["type"] == "/api/problems/not-found"
    assert malformed.status_code == 422
    assert problem_of(malformed)["errors"][0]["field"] == "path.message_id"
