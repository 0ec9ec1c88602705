"""HTTP control of the SMSC simulator: inject MO SMS and read what the handsets received."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from smsline.smpp.simulator import ReceivedSms, Simulator

MAX_WAIT = 30.0


class MoRequest(BaseModel):
    """An SMS as a customer's handset sends it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sender: str = Field(
        alias="from",
        pattern=r"^\+?[0-9]{3,20}$",
        description="The customer's phone, E.164 with or without '+'.",
    )
    text: str = Field(min_length=1, max_length=10_000)
    to: str | None = Field(
        default=None,
        pattern=r"^\+?[0-9A-Za-z]{1,20}$",
        description="Destination; default: the service number.",
    )
    data_coding: Literal[0, 3, 8] | None = Field(
        default=None,
        description="Force GSM-7 (0), Latin-1 (3) or UCS-2 (8); default: GSM-7 when possible.",
    )


def message_json(sms: ReceivedSms) -> dict[str, Any]:
    return {
        "id": sms.id,
        "from": sms.source,
        "to": sms.destination,
        "text": sms.text,
        "encoding": sms.encoding,
        "data_coding": sms.data_coding,
        "parts": len(sms.parts),
        "message_ids": sms.message_ids,
        "at": sms.completed_wall.isoformat(),
    }


def create_app(simulator: Simulator, *, service_number: str) -> FastAPI:
    app = FastAPI(title="smsline SMSC simulator", docs_url="/docs", redoc_url=None)

    @app.post("/mo", status_code=status.HTTP_202_ACCEPTED)
    async def post_mo(body: MoRequest) -> dict[str, int]:
        """Queue an SMS from a handset for delivery to the ESMEs."""
        try:
            ids = await simulator.inject_mo(
                body.sender, body.text, body.to or service_number, data_coding=body.data_coding
            )
        except ValueError as exc:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", "text"], "msg": str(exc), "type": "value_error"}],
            ) from exc
        return {"queued": len(ids)}

    @app.get("/messages")
    async def get_messages(
        to: Annotated[str | None, Query(description="Only messages to this number.")] = None,
        after: Annotated[int, Query(ge=0, description="Only messages with a greater id.")] = 0,
        wait: Annotated[
            float, Query(ge=0.0, le=MAX_WAIT, description="Seconds to wait for a new one.")
        ] = 0.0,
    ) -> list[dict[str, Any]]:
        """Reassembled messages the ESMEs submitted, oldest first."""
        found = await simulator.messages_after(after, destination=to, timeout=wait)
        return [message_json(sms) for sms in found]

    @app.get("/binds")
    async def get_binds() -> list[dict[str, str]]:
        return simulator.binds()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "smpp_port": simulator.port,
            "binds": len(simulator.binds()),
            "messages": len(simulator.messages),
            "last_message_id": simulator.last_message_id,
            "pending_deliveries": simulator.pending_deliveries,
        }

    return app
