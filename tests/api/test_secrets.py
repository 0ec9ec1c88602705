"""Secrets stay secret: API tokens, signing secrets and portal passwords are in no log, no
table, no answer of the API (a token's creation aside)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import update

from smsline.db.schema import customers
from smsline.line.credentials import password_hasher
from tests.api.conftest import Api
from tests.line.conftest import add_customer
from tests.line.test_secrets import database_dump


async def test_tokens_secrets_and_passwords_are_nowhere(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await add_customer(api.db.engine, customer_id="C-1", phone="+79161234567", login="ivanov")
    temporary, new = "q8w7e6r5", "a much better password"
    async with api.db.engine.begin() as conn:
        await conn.execute(
            update(customers).values(
                password_hash=password_hasher().hash(temporary),
                password_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                password_must_change=True,
            )
        )
    issued = await api.token()
    weak = await api.token("messages:read")
    answers = [
        await api.client.post(
            "/api/v1/portal/password",
            json={"login": "ivanov", "password": temporary, "new_password": new},
            headers=api.auth(issued),
        ),
        await api.client.post(
            "/api/v1/portal/verify", json={"login": "ivanov", "password": new}, headers=api.auth(issued)
        ),
        await api.client.post(
            "/api/v1/portal/verify", json={"login": "ivanov", "password": temporary}, headers=api.auth(weak)
        ),
        await api.client.post(
            "/api/v1/notifications",
            json={"customer_id": "C-1", "text": "hello"},
            headers=api.auth(issued) | {"Idempotency-Key": "k"},
        ),
        await api.client.get("/api/v1/messages/1", headers=api.auth(issued)),
        await api.client.get("/api/v1/messages/1", headers=api.auth(issued.token + "x")),
    ]
    assert [a.status_code for a in answers] == [200, 200, 403, 202, 200, 401]
    assert answers[1].json()["result"] == "ok"

    dump = await database_dump(api.db.engine)
    for secret in (issued.token, weak.token, issued.signing_secret, temporary, new):
        assert secret not in dump
        assert secret not in caplog.text
        for answer in answers:
            assert secret not in answer.text
    assert issued.token not in repr(issued)
