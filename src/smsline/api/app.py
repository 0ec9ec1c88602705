"""The HTTP side of `smsline serve`: health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class Readiness(Protocol):
    def readiness(self) -> dict[str, object]: ...


def create_app(service: Readiness) -> FastAPI:
    app = FastAPI(
        title="smsline",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, object]:
        state = service.readiness()
        if not state.get("ready"):
            response.status_code = 503
        return state

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
