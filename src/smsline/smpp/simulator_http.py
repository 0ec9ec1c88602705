"""HTTP control of the SMSC simulator: inject MO SMS, read what the handsets received, and make
the SMSC misbehave."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from smsline.domain.command_status import STATUS_RULES
from smsline.smpp.simulator import ReceivedSms, Simulator
from smsline.smpp.simulator_faults import Faults

MAX_WAIT = 30.0


class ReceiptRequest(BaseModel):
    """A delivery receipt for no message the simulator accepted (a stray one)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    text: str = Field(
        max_length=254,
        description="The receipt's short_message, e.g. `id:123 sub:001 dlvrd:001 … stat:DELIVRD err:000`.",
    )
    receipted_message_id: str | None = Field(
        default=None, max_length=64, description="The `receipted_message_id` TLV; none when left out."
    )
    sender: str = Field(
        default="79990000000",
        alias="from",
        pattern=r"^\+?[0-9]{3,20}$",
        description="The handset the receipt is about.",
    )


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


_STATUS_BY_NAME = {rule.name: code for code, rule in STATUS_RULES.items()}


class FaultsChange(BaseModel):
    """The faults to change; fields left out keep their current value (see ``Faults``; the
    defaults here are a well-behaved SMSC's)."""

    model_config = ConfigDict(extra="forbid")

    response_delay: float = Field(default=0.0, ge=0.0, le=60.0)
    throttle_tps: float = Field(default=0.0, ge=0.0)
    error_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int | str = Field(
        default=0x08, description="A command_status, as a number or a name such as ESME_RSYSERR."
    )
    drop_link_every: int = Field(default=0, ge=0)
    hung: bool = False
    message_id_format: Literal["hex", "dec"] = "hex"
    receipt_id_format: Literal["hex", "dec"] | None = None
    receipt_tlvs: bool = True
    receipt_delay: float = Field(default=0.0, ge=0.0)
    receipt_before_response: bool = False
    late_receipt_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    late_receipt_delay: float = Field(default=0.0, ge=0.0)
    missing_receipt_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = 0

    @field_validator("error_status")
    @classmethod
    def _status_code(cls, value: int | str) -> int:
        if isinstance(value, str):
            if value not in _STATUS_BY_NAME:
                raise ValueError(f"unknown command_status name {value!r}")
            return _STATUS_BY_NAME[value]
        if not 0 < value <= 0xFFFFFFFF:
            raise ValueError("a command_status other than ESME_ROK (0) is needed")
        return value


def faults_json(faults: Faults) -> dict[str, Any]:
    return dataclasses.asdict(faults)


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

    @app.post("/receipts", status_code=status.HTTP_202_ACCEPTED)
    async def post_receipt(body: ReceiptRequest) -> dict[str, int]:
        """Queue a delivery receipt that matches no message (as SMSCs send now and then)."""
        try:
            delivery = simulator.inject_receipt(
                body.text, receipted_message_id=body.receipted_message_id, source=body.sender
            )
        except ValueError as exc:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", "text"], "msg": str(exc), "type": "value_error"}],
            ) from exc
        return {"queued": delivery}

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

    @app.get("/faults")
    async def get_faults() -> dict[str, Any]:
        """How the simulator misbehaves now."""
        return faults_json(simulator.faults)

    @app.patch("/faults")
    async def patch_faults(body: FaultsChange) -> dict[str, Any]:
        """Change some faults; the others keep their values. Returns all of them."""
        return faults_json(simulator.set_faults(**body.model_dump(exclude_unset=True)))

    @app.delete("/faults")
    async def delete_faults() -> dict[str, Any]:
        """Behave well again."""
        return faults_json(simulator.clear_faults())

    @app.post("/drop-links")
    async def post_drop_links() -> dict[str, int]:
        """Abort every ESME connection now, as a network failure would."""
        return {"dropped": simulator.drop_links()}

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
