"""The HTTP API served in-process: real HTTP requests (httpx over ASGI) against the app, on a
fresh database of each backend."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from smsline.api.app import create_app
from smsline.api.context import ApiContext
from smsline.config import Settings
from smsline.db.engine import Database
from smsline.notify.tokens import IssuedToken, create_token
from smsline.serve import Service
from tests.line.conftest import (  # noqa: F401 (fixtures for the end-to-end tests)
    service,
    settings_overrides,
    simulator,
)

_names = itertools.count(1)
SECRET_KEY = "test-service-key-0123456789abcdef"
ALL_SCOPES = (
    "notifications:send",
    "notifications:send_text",
    "messages:read",
    "templates:read",
    "templates:write",
    "customers:read",
    "customers:write",
    "portal:verify",
    "campaigns:read",
    "campaigns:write",
)
CARD_READY = {
    "text_en": "Your card ending {last4} is ready.",
    "text_ru": "Ваша карта *{last4} готова.",
    "parameters": ["last4"],
}


async def issue(running: Service) -> IssuedToken:
    """A token with every scope, made through a running service's database."""
    key = running.service_key()
    return await running.db.run(lambda conn: create_token(conn, "crm", ALL_SCOPES, service_key=key))


class FakeClock:
    """The API's monotonic clock, moved by the test (rate limits, token cache)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Ready:
    async def readiness(self) -> dict[str, object]:
        return {"ready": True}

    async def exposition(self) -> bytes:
        return generate_latest()


@dataclass
class Api:
    """The app, a client for it, its database, and tokens to call it with."""

    client: httpx.AsyncClient
    context: ApiContext
    db: Database
    clock: FakeClock
    woken: list[int] = field(default_factory=list)

    async def token(
        self, *scopes: str, name: str | None = None, rate_limit: int | None = None
    ) -> IssuedToken:
        chosen: Sequence[str] = scopes or ALL_SCOPES
        label = name or f"token-{next(_names)}"
        return await self.db.run(
            lambda conn: create_token(
                conn, label, chosen, service_key=SECRET_KEY.encode(), rate_limit=rate_limit
            )
        )

    @staticmethod
    def auth(token: IssuedToken | str) -> dict[str, str]:
        value = token if isinstance(token, str) else token.token
        return {"Authorization": f"Bearer {value}"}


def api_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "secret_key": SecretStr(SECRET_KEY)}
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    db = Database(settings.database_url)
    clock = FakeClock()
    woken: list[int] = []
    context = ApiContext(db, settings, on_queued=lambda: woken.append(1), clock=clock)
    app = create_app(Ready(), context)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://smsline.test") as client:
            yield Api(client, context, db, clock, woken)
    finally:
        context.close()
        await db.dispose()


@pytest.fixture
def api_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(database_url: str, api_overrides: dict[str, Any]) -> AsyncIterator[Api]:
    async with serving(api_settings(database_url, **api_overrides)) as served:
        yield served


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem details of an error response (checking it is one)."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("/api/problems/")
    return body
