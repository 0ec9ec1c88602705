"""A schemathesis run against /api/openapi.json: generated requests to every operation, over real
HTTP to the app served by uvicorn, find no 5xx and no answer that breaks the published schema."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from smsline.api.app import create_app
from smsline.api.context import ApiContext
from smsline.config import Settings
from smsline.db.engine import Database
from smsline.db.migrate import upgrade_database
from smsline.notify.templates import save_template
from smsline.notify.tokens import create_token
from tests.api.conftest import ALL_SCOPES, SECRET_KEY, Ready


@schemathesis.serializer("text/csv")
def _csv(_context: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running on a thread of its own
        pass


class ServedApi:
    """The app with a token of every scope, served by uvicorn on a thread with its own loop."""

    def __init__(self, database_path: Path) -> None:
        self.settings = Settings(database_url=f"sqlite:///{database_path}", secret_key=SecretStr(SECRET_KEY))
        self.port = 0
        self.token = ""
        self._ready = threading.Event()
        self._server: _Server | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)

    def start(self) -> None:
        upgrade_database(self.settings.database_url)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            raise self._failure
        assert self.port, "the API did not start"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        db = Database(self.settings.database_url)
        issued = await db.run(
            lambda conn: create_token(
                conn, "schema", ALL_SCOPES, service_key=SECRET_KEY.encode(), rate_limit=1_000_000
            )
        )
        await db.run(
            lambda conn: save_template(
                conn, "card_ready", {"en": "Card {last4}", "ru": "Карта {last4}"}, ["last4"], actor="test"
            )
        )
        self.token = issued.token
        context = ApiContext(db, self.settings)
        app = create_app(Ready(), context)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = _Server(config)
        serving = asyncio.ensure_future(self._server.serve())
        while not self._server.started:
            if serving.done():
                serving.result()  # it could not start: say why
            await asyncio.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        self._ready.set()
        await serving
        context.close()
        await db.dispose()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    served = ServedApi(tmp_path_factory.mktemp("schema") / "smsline.db")
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def api_schema(served_api: ServedApi) -> Any:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{served_api.port}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_the_api_keeps_to_its_schema(case: Any, served_api: ServedApi) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {served_api.token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
