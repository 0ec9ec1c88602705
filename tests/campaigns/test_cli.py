"""`smsline campaign …` works on the database, from another process than `smsline serve`: the
running service notices what it changed."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from smsline.cli import app
from smsline.serve import Service
from smsline.smpp.simulator import Simulator
from tests.campaigns.conftest import add_customers, phone_of, recipients, state_of, waiting_in_outbox
from tests.line.conftest import eventually


def invoke(database_url: str, *args: str) -> tuple[int, str]:
    env = {"SMSLINE_DATABASE_URL": database_url, "SMSLINE_CONFIG": None}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


async def cli(database_url: str, *args: str) -> tuple[int, str]:
    return await asyncio.to_thread(invoke, database_url, *args)


def campaign_sms(sim: Simulator) -> Counter[str]:
    return Counter("+" + m.destination.lstrip("+") for m in sim.messages if m.text.startswith("Hi "))


async def test_the_cli_drives_a_campaign_the_service_runs(
    database_url: str, service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customers(engine, 40, tags=("vip",))
    await add_customers(engine, 5, first=100)
    code, out = await cli(
        database_url, "campaign", "create", "VIP news", "--text", "Hi {name}", "--tag", "vip", "--tps", "10"
    )
    assert code == 0, out
    match = re.search(r"created campaign (\d+) 'VIP news' \(draft\): 40 recipients", out)
    assert match, out
    campaign_id = int(match.group(1))
    assert "estimated cost: 40 segments" in out

    code, out = await cli(database_url, "campaign", "start", str(campaign_id))
    assert (code, out.strip()) == (0, f"campaign {campaign_id} is running")

    async def some_sent() -> bool:
        return sum(campaign_sms(simulator).values()) >= 5

    await eventually(some_sent)  # the runner found the campaign by itself
    code, out = await cli(database_url, "campaign", "pause", str(campaign_id))
    assert code == 0, out

    async def quiet() -> bool:
        return await waiting_in_outbox(engine, campaign_id) == 0

    await eventually(quiet)  # and noticed the pause made by another process
    assert sum(campaign_sms(simulator).values()) < 40
    code, out = await cli(database_url, "campaign", "pause", str(campaign_id))
    assert code == 2
    assert "cannot pause" in out

    code, out = await cli(database_url, "campaign", "resume", str(campaign_id))
    assert code == 0, out
    code, out = await cli(database_url, "campaign", "show", str(campaign_id), "--follow")
    assert code == 0, out
    assert f"campaign {campaign_id} completed" in out
    assert await state_of(engine, campaign_id) == "completed"
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(40)})

    code, out = await cli(database_url, "campaign", "show", str(campaign_id))
    assert code == 0, out
    assert "sent 40" in out
    for action in ("create", "start", "pause", "resume", "complete"):
        assert f": {action}" in out
    code, out = await cli(database_url, "campaign", "list")
    assert "VIP news" in out
    assert "completed" in out


async def test_cli_list_audiences_report_unknown_entries_and_cancel(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await add_customers(engine, 3)
    ids = tmp_path / "ids.txt"
    ids.write_text("c0\nc1\nc1\nnobody\n", encoding="utf-8")
    phones = tmp_path / "phones.txt"
    phones.write_text(f"{phone_of(2)}\n{phone_of(0)}\n", encoding="utf-8")
    code, out = await cli(
        database_url, "campaign", "create", "Listed", "--text", "Hi",
        "--ids", str(ids), "--phones", str(phones),
    )
    assert code == 0, out
    assert "3 recipients" in out
    assert "1 listed entries name no customer" in out
    assert "nobody: no customer has this id" in out
    campaign_id = int(re.search(r"created campaign (\d+)", out).group(1))  # type: ignore[union-attr]

    code, out = await cli(database_url, "campaign", "cancel", str(campaign_id))
    assert code == 0, out
    assert await recipients(engine, campaign_id) == {"cancelled": 3}

    code, out = await cli(database_url, "campaign", "create", "Bad", "--text", "Hi {nick}", "--all")
    assert code == 2
    assert "text: uses {nick}" in out
    code, out = await cli(database_url, "campaign", "create", "No audience", "--text", "Hi")
    assert code == 2
    assert "choose the audience" in out
    code, out = await cli(database_url, "campaign", "start", "999")
    assert code == 1
