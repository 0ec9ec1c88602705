"""Templates through the API: validated when saved, with segments and encoding of a sample."""

from __future__ import annotations

from tests.api.conftest import Api, problem_of


async def test_a_template_is_saved_with_its_sample_rendering(api: Api) -> None:
    token = await api.token("templates:write", "templates:read")
    body = {
        "text_en": "Your card ending {last4} is ready.",
        "text_ru": "Ваша карта *{last4} готова.",
        "parameters": ["last4"],
        "sample": {"last4": "4242"},
    }

    created = await api.client.put("/api/v1/templates/card_ready", json=body, headers=api.auth(token))
    updated = await api.client.put(
        "/api/v1/templates/card_ready",
        json=body | {"text_en": "Card {last4} is ready {{ok}}."},
        headers=api.auth(token),
    )
    listed = await api.client.get("/api/v1/templates", headers=api.auth(token))

    assert created.status_code == 201, created.text
    rendering = created.json()["sample_rendering"]
    assert rendering["en"] == {"text": "Your card ending 4242 is ready.", "encoding": "gsm7", "segments": 1}
    assert rendering["ru"] == {"text": "Ваша карта *4242 готова.", "encoding": "ucs2", "segments": 1}
    assert created.json()["essential"] is False
    assert updated.status_code == 200
    assert updated.json()["sample_rendering"]["en"]["text"] == "Card 4242 is ready {ok}."
    assert [t["name"] for t in listed.json()] == ["card_ready"]


async def test_unknown_and_missing_placeholders_are_refused_at_creation(api: Api) -> None:
    token = await api.token("templates:write", "templates:read")

    response = await api.client.put(
        "/api/v1/templates/payment",
        json={
            "text_en": "Payment of {amount} received on {date}.",
            "text_ru": "Платёж получен.",
            "parameters": ["amount"],
        },
        headers=api.auth(token),
    )

    assert response.status_code == 422
    problem = problem_of(response)
    assert problem["type"] == "/api/problems/invalid-template"
    assert {"field": "body.text_en", "message": "uses {date}, which is not a declared parameter"} in problem[
        "errors"
    ]
    assert {"field": "body.text_ru", "message": "does not use the declared parameter {amount}"} in problem[
        "errors"
    ]
    missing = await api.client.get("/api/v1/templates/payment", headers=api.auth(token))
    assert missing.status_code == 404


async def test_a_stray_brace_and_a_bad_name_are_refused(api: Api) -> None:
    token = await api.token("templates:write")

    stray = await api.client.put(
        "/api/v1/templates/x", json={"text_en": "50% {off", "text_ru": "скидка"}, headers=api.auth(token)
    )
    bad_name = await api.client.put(
        "/api/v1/templates/Bad Name", json={"text_en": "a", "text_ru": "b"}, headers=api.auth(token)
    )

    assert stray.status_code == 422
    assert problem_of(stray)["errors"][0]["field"] == "body.text_en"
    assert "stray '{'" in problem_of(stray)["errors"][0]["message"]
    assert bad_name.status_code == 422
    assert problem_of(bad_name)["errors"][0]["field"] == "path.name"


async def test_a_template_can_be_deleted(api: Api) -> None:
    token = await api.token("templates:write", "templates:read")
    await api.client.put(
        "/api/v1/templates/t", json={"text_en": "a", "text_ru": "б"}, headers=api.auth(token)
    )

    deleted = await api.client.delete("/api/v1/templates/t", headers=api.auth(token))
    again = await api.client.delete("/api/v1/templates/t", headers=api.auth(token))

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert problem_of(again)["type"] == "/api/problems/not-found"
