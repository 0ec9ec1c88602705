"""The HTTP side of `smsline serve`: health, readiness, Prometheus metrics and — given an
ApiContext — the public API under ``/api/v1`` (OpenAPI at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST

from smsline.api import campaigns, customers, messages, notifications, portal, templates
from smsline.api.context import ApiContext
from smsline.api.problems import install_problem_handlers

DESCRIPTION = """\
The SMS service of the customer-support system. Other systems text customers through
`POST /api/v1/notifications`.

Every endpoint takes an API token (`Authorization: Bearer <token>`, made with
`smsline tokens create`) with the scope it names. Errors are RFC 9457 problem details
(`application/problem+json`) with a stable `type`.
"""


class ServiceStatus(Protocol):
    """What ``/readyz`` and ``/metrics`` report: the service's links and counters (asked from
    the service when the API runs in a process of its own)."""

    async def readiness(self) -> dict[str, object]: ...

    async def exposition(self) -> bytes: ...


def create_app(service: ServiceStatus, api: ApiContext | None = None) -> FastAPI:
    app = FastAPI(
        title="smsline",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    install_problem_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, object]:
        state = await service.readiness()
        if not state.get("ready"):
            response.status_code = 503
        return state

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(await service.exposition(), media_type=CONTENT_TYPE_LATEST)

    if api is not None:
        app.state.api = api
        for module in (notifications, messages, templates, customers, portal, campaigns):
            app.include_router(module.router)
        app.add_middleware(notifications.NotificationsLane)
    return app
