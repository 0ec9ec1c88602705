"""The portal's login check and password change for temporary passwords."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from smsline.db.schema import customers
from smsline.line.credentials import password_hasher
from tests.api.conftest import Api, api_settings, problem_of, serving
from tests.line.conftest import add_customer

TEMPORARY = "k3x9q2mw"


async def give_password(api: Api, login: str, password: str, *, expires_in_hours: float = 24.0) -> None:
    digest = password_hasher().hash(password)
    async with api.db.engine.begin() as conn:
        await conn.execute(
            update(customers)
            .where(customers.c.login == login)
            .values(
                password_hash=digest,
                password_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=expires_in_hours),
                password_must_change=True,
            )
        )


async def verify(api: Api, token: Any, login: str, password: str) -> Any:
    return await api.client.post(
        "/api/v1/portal/verify", json={"login": login, "password": password}, headers=api.auth(token)
    )


async def test_a_temporary_password_must_be_changed_then_the_new_one_works(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", login="ivanov")
    await give_password(api, "ivanov", TEMPORARY)
    token = await api.token("portal:verify")

    first = await verify(api, token, "ivanov", TEMPORARY)
    weak = await api.client.post(
        "/api/v1/portal/password",
        json={"login": "ivanov", "password": TEMPORARY, "new_password": "short"},
        headers=api.auth(token),
    )
    changed = await api.client.post(
        "/api/v1/portal/password",
        json={"login": "ivanov", "password": TEMPORARY, "new_password": "correct horse battery"},
        headers=api.auth(token),
    )
    old = await verify(api, token, "ivanov", TEMPORARY)
    new = await verify(api, token, "ivanov", "correct horse battery")

    assert first.json() == {"result": "must_change", "customer_id": "C-1"}
    assert weak.status_code == 422
    assert problem_of(weak)["errors"][0]["field"] == "body.new_password"
    assert changed.json() == {"result": "changed", "customer_id": "C-1"}
    assert old.json() == {"result": "wrong", "customer_id": None}
    assert new.json() == {"result": "ok", "customer_id": "C-1"}
    async with api.db.engine.connect() as conn:
        row = (await conn.execute(select(customers).where(customers.c.login == "ivanov"))).mappings().one()
    assert row["password_must_change"] is False
    assert row["password_expires_at"] is None
    assert "correct horse battery" not in row["password_hash"]


async def test_wrong_unknown_and_expired(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", login="ivanov")
    await add_customer(api.db.engine, customer_id="C-2", phone="+79161234568", login="petrova")
    await add_customer(api.db.engine, customer_id="C-3", phone="+79161234569", login="never")
    await give_password(api, "ivanov", TEMPORARY)
    await give_password(api, "petrova", TEMPORARY, expires_in_hours=-1)
    token = await api.token("portal:verify")

    assert (await verify(api, token, "ivanov", "k3x9q2mX")).json()["result"] == "wrong"
    assert (await verify(api, token, "nobody", TEMPORARY)).json()["result"] == "wrong"
    assert (await verify(api, token, "never", TEMPORARY)).json()["result"] == "wrong"
    assert (await verify(api, token, "petrova", TEMPORARY)).json() == {
        "result": "expired",
        "customer_id": None,
    }
    expired_change = await api.client.post(
        "/api/v1/portal/password",
        json={"login": "petrova", "password": TEMPORARY, "new_password": "correct horse battery"},
        headers=api.auth(token),
    )
    assert expired_change.json()["result"] == "expired"


async def test_attempts_are_rate_limited_per_login(database_url: str) -> None:
    async with serving(api_settings(database_url, portal_attempts_per_minute=3)) as api:
        await attempts_are_rate_limited_per_login(api)


async def attempts_are_rate_limited_per_login(api: Api) -> None:
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", login="ivanov")
    await give_password(api, "ivanov", TEMPORARY)
    token = await api.token("portal:verify")

    guesses = [(await verify(api, token, "ivanov", f"guess{n}")).status_code for n in range(4)]
    limited = await verify(api, token, "ivanov", TEMPORARY)
    other_login = await verify(api, token, "someone", "x")

    assert guesses == [200, 200, 200, 429]
    assert limited.status_code == 429, "even the right password waits"
    assert int(limited.headers["Retry-After"]) > 0
    assert other_login.status_code == 200
    api.clock.advance(61)
    assert (await verify(api, token, "IVANOV ", TEMPORARY)).status_code == 200
    assert (await verify(api, token, "ivanov", TEMPORARY)).json()["result"] == "must_change"
