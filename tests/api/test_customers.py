"""Customers through the API: the import's rules, the SMS preference as a consent event, bulk import."""

from __future__ import annotations

from tests.api.conftest import Api, problem_of


async def test_a_customer_is_created_then_updated(api: Api) -> None:
    token = await api.token("customers:write", "customers:read")
    body = {
        "phone": "8 916 123-45-67",
        "personal_code": "1234",
        "login": "ivanov",
        "language": "ru",
        "tags": ["gold", "moscow"],
    }

    created = await api.client.put("/api/v1/customers/C-1", json=body, headers=api.auth(token))
    updated = await api.client.put(
        "/api/v1/customers/C-1",
        json={"phone": "+79161234567", "personal_code": "1234", "login": "ivanov", "name": "Ivan Ivanov"},
        headers=api.auth(token),
    )
    fetched = await api.client.get("/api/v1/customers/C-1", headers=api.auth(token))

    assert created.status_code == 201, created.text
    assert created.json()["phone"] == "+79161234567"
    assert updated.status_code == 200
    customer = fetched.json()
    assert (customer["name"], customer["language"], customer["tags"]) == (
        "Ivan Ivanov",
        "ru",
        ["gold", "moscow"],
    )
    assert customer["sms_enabled"] is True
    assert "password_hash" not in customer


async def test_import_rules_refuse_a_bad_customer_naming_the_field(api: Api) -> None:
    token = await api.token("customers:write", "customers:read")
    await api.client.put(
        "/api/v1/customers/C-1",
        json={"phone": "+79161234567", "personal_code": "1", "login": "a"},
        headers=api.auth(token),
    )

    bad_phone = await api.client.put(
        "/api/v1/customers/C-2",
        json={"phone": "12ab", "personal_code": "1", "login": "b"},
        headers=api.auth(token),
    )
    taken_phone = await api.client.put(
        "/api/v1/customers/C-2",
        json={"phone": "+79161234567", "personal_code": "1", "login": "b"},
        headers=api.auth(token),
    )
    bad_zone = await api.client.put(
        "/api/v1/customers/C-2",
        json={"phone": "+79161234568", "personal_code": "1", "login": "b", "timezone": "Mars/Olympus"},
        headers=api.auth(token),
    )

    assert bad_phone.status_code == 422
    assert problem_of(bad_phone)["errors"][0]["field"] == "body.phone"
    assert taken_phone.status_code == 422
    assert "already belongs to customer 'C-1'" in problem_of(taken_phone)["detail"]
    assert bad_zone.status_code == 422
    assert problem_of(bad_zone)["errors"][0]["field"] == "body.timezone"
    assert (await api.client.get("/api/v1/customers/C-2", headers=api.auth(token))).status_code == 404


async def test_an_operator_turning_sms_off_is_a_consent_event_with_the_actor(api: Api) -> None:
    token = await api.token("customers:write", "customers:read", name="crm")
    await api.client.put(
        "/api/v1/customers/C-1",
        json={"phone": "+79161234567", "personal_code": "1", "login": "a"},
        headers=api.auth(token),
    )

    off = await api.client.put(
        "/api/v1/customers/C-1/sms",
        json={"enabled": False, "actor": "operator:petrova"},
        headers=api.auth(token),
    )
    no_actor = await api.client.put(
        "/api/v1/customers/C-1/sms", json={"enabled": True}, headers=api.auth(token)
    )

    assert off.status_code == 200, off.text
    customer = off.json()
    assert customer["sms_enabled"] is False
    [event] = customer["consent"]
    assert (event["sms_enabled"], event["channel"], event["actor"]) == (
        False,
        "api",
        "api:crm:operator:petrova",
    )
    assert no_actor.status_code == 422
    assert problem_of(no_actor)["errors"][0]["field"] == "body.actor"


async def test_bulk_import_follows_the_cli_rules(api: Api) -> None:
    token = await api.token("customers:write", "customers:read")
    csv = (
        "customer_id,phone,personal_code,login,sms_enabled\n"
        "C-1,+79161234567,1111,one,no\n"
        "C-2,not a phone,2222,two,\n"
        "C-3,8 916 123 45 69,3333,three,\n"
    )

    report = await api.client.post(
        "/api/v1/customers/import",
        content=csv.encode(),
        headers=api.auth(token) | {"Content-Type": "text/csv"},
    )
    strict = await api.client.post(
        "/api/v1/customers/import?all_or_nothing=true",
        content=csv.replace("C-", "D-").replace("+7916", "+7917").replace("8 916", "8 917").encode(),
        headers=api.auth(token) | {"Content-Type": "text/csv"},
    )
    one = await api.client.get("/api/v1/customers/C-1", headers=api.auth(token))

    assert report.status_code == 200, report.text
    assert report.json() | {"rejected": None} == {
        "imported": True,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": None,
    }
    [rejected] = report.json()["rejected"]
    assert rejected["line"] == 3
    assert rejected["reason"].startswith("phone:")
    assert strict.json()["imported"] is False
    assert (await api.client.get("/api/v1/customers/D-1", headers=api.auth(token))).status_code == 404
    assert one.json()["sms_enabled"] is False
    assert one.json()["consent"][0]["channel"] == "api"


async def test_bulk_import_wants_csv(api: Api) -> None:
    token = await api.token("customers:write")

    response = await api.client.post("/api/v1/customers/import", json={"a": 1}, headers=api.auth(token))
    no_header = await api.client.post(
        "/api/v1/customers/import",
        content=b"a,b\n1,2\n",
        headers=api.auth(token) | {"Content-Type": "text/csv"},
    )

    assert response.status_code == 415
    assert problem_of(response)["type"] == "/api/problems/unsupported-media-type"
    assert no_header.status_code == 422
    assert "missing required column(s)" in problem_of(no_header)["detail"]
