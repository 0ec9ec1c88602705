"""`smsline tokens …` and `smsline templates …`."""

from __future__ import annotations

import asyncio
import os
import re
import stat

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from smsline.api.app import create_app
from smsline.api.context import ApiContext
from smsline.cli import app
from smsline.config import Settings
from smsline.db.engine import Database
from smsline.db.schema import api_tokens
from smsline.domain.signatures import signing_secret
from smsline.notify.service_key import service_key
from tests.api.conftest import Ready

KEY = "cli-test-service-key"
TOKEN = re.compile(r"token:\s+(sml_\S+)")
SIGNING = re.compile(r"signing secret:\s+(whsec_\S+)")


def invoke(database_url: str, *args: str, key: str | None = KEY) -> tuple[int, str]:
    env = {"SMSLINE_DATABASE_URL": database_url, "SMSLINE_CONFIG": None, "SMSLINE_SECRET_KEY": key}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


async def test_a_token_is_shown_once_stored_hashed_and_works(database_url: str, engine: AsyncEngine) -> None:
    code, out = await asyncio.to_thread(
        invoke, database_url, "tokens", "create", "card-issuing", "--scope", "messages:read"
    )
    assert code == 0, out
    token, secret = TOKEN.search(out), SIGNING.search(out)
    assert token
    assert secret
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_tokens))).mappings().one()
    assert token.group(1) not in repr(dict(row))
    assert row["scopes"] == "messages:read"
    assert secret.group(1) == signing_secret(KEY.encode(), row["public_id"])

    code, listing = await asyncio.to_thread(invoke, database_url, "tokens", "list")
    assert code == 0
    assert "card-issuing" in listing
    assert row["public_id"] in listing
    assert token.group(1) not in listing

    settings = Settings(database_url=database_url, secret_key=SecretStr(KEY))
    db = Database(database_url)
    context = ApiContext(db, settings)
    try:
        transport = httpx.ASGITransport(app=create_app(Ready(), context))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            auth = {"Authorization": f"Bearer {token.group(1)}"}
            assert (await client.get("/api/v1/messages/1", headers=auth)).status_code == 404
            code, out = await asyncio.to_thread(invoke, database_url, "tokens", "revoke", "card-issuing")
            assert code == 0, out
            context.tokens.clear()  # what the cache would do within seconds
            assert (await client.get("/api/v1/messages/1", headers=auth)).status_code == 401
    finally:
        context.close()
        await db.dispose()

    code, out = await asyncio.to_thread(invoke, database_url, "tokens", "revoke", "card-issuing")
    assert code == 1


async def test_token_mistakes_are_reported(database_url: str) -> None:
    code, out = await asyncio.to_thread(invoke, database_url, "tokens", "create", "x", "--scope", "admin")
    assert code == 2
    assert "unknown scope(s): admin" in out
    assert "notifications:send" in out
    await asyncio.to_thread(invoke, database_url, "tokens", "create", "x")
    code, out = await asyncio.to_thread(invoke, database_url, "tokens", "create", "x")
    assert code == 2
    assert "already" in out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_without_a_configured_key_sqlite_keeps_one_beside_the_database(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    first = service_key(settings)
    again = service_key(settings)
    assert first == again
    assert len(first) == 64
    path = database_url.removeprefix("sqlite:///")
    key_path = os.path.join(os.path.dirname(path), "smsline.key")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    code, out = await asyncio.to_thread(invoke, database_url, "tokens", "create", "crm", key=None)
    assert code == 0, out


async def test_templates_from_the_command_line(database_url: str) -> None:
    code, out = await asyncio.to_thread(
        invoke,
        database_url,
        "templates",
        "set",
        "card_ready",
        "--en",
        "Card {last4} is ready",
        "--ru",
        "Карта {last4} готова",
        "--param",
        "last4",
        "--sample",
        "last4=4242",
    )
    assert code == 0, out
    assert "created template 'card_ready'" in out
    assert "ru: 1 segment(s), ucs2: Карта 4242 готова" in out

    code, out = await asyncio.to_thread(
        invoke, database_url, "templates", "set", "bad", "--en", "Paid {amount}", "--ru", "Оплачено"
    )
    assert code == 2
    assert "text_en: uses {amount}, which is not a declared parameter" in out

    code, out = await asyncio.to_thread(invoke, database_url, "templates", "list")
    assert "card_ready" in out
    assert "bad" not in out
    code, out = await asyncio.to_thread(invoke, database_url, "templates", "show", "card_ready")
    assert "en: Card {last4} is ready" in out
    code, out = await asyncio.to_thread(invoke, database_url, "templates", "delete", "card_ready")
    assert code == 0
    code, out = await asyncio.to_thread(invoke, database_url, "templates", "show", "card_ready")
    assert code == 1


@pytest.mark.parametrize("command", [("tokens", "list"), ("templates", "list"), ("campaign", "list")])
async def test_a_database_that_was_never_migrated_is_named_with_what_to_run(
    empty_database_url: str, command: tuple[str, ...]
) -> None:
    code, out = await asyncio.to_thread(invoke, empty_database_url, *command)
    assert code == 2
    assert "never migrated" in out
    assert "smsline db upgrade" in out
    assert "Traceback" not in out
