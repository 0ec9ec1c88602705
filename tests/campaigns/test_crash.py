"""`kill -9` of `smsline serve` in the middle of a campaign: after a restart every recipient has
their SMS, and only SMS whose outcome was not yet recorded at the kill may arrive twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from smsline.campaigns.service import Audience, NewCampaign, act, create_campaign
from smsline.db.engine import create_oneshot_engine, transaction
from smsline.domain.quiet_hours import Window
from smsline.smpp.simulator import Simulator
from tests.campaigns.conftest import add_customers, phone_of, state_of
from tests.line.test_crash import DUPLICATE_BOUND, kill_mid_send_and_restart, serve_env

COUNT = 1500


@pytest.mark.slow
async def test_kill_9_mid_campaign_loses_no_recipient(database_url: str, simulator: Simulator) -> None:
    engine = create_oneshot_engine(database_url)

    async def run(work: Callable[[Connection], Any]) -> Any:
        async with transaction(engine) as conn:
            return await conn.run_sync(work)

    try:
        await add_customers(engine, COUNT)
        created = await create_campaign(
            run,
            NewCampaign(
                name="crash",
                text="Hello {customer_id}",
                audience=Audience("all"),
                window=Window(0, 0),  # always open, whatever the time of the test run
                tps=500,  # still feeding when the kill comes
            ),
            actor="tester",
        )
        campaign_id = created.campaign.id
        await act(run, campaign_id, "start", actor="tester")

        async def finished() -> bool:
            return await state_of(engine, campaign_id) == "completed"

        sent_before_kill = await kill_mid_send_and_restart(
            simulator, serve_env(database_url, simulator), COUNT, finished
        )
        received = Counter(m.text for m in simulator.messages)
        assert set(received) == {f"Hello c{i}" for i in range(COUNT)}  # nobody lost
        assert {"+" + m.destination.lstrip("+") for m in simulator.messages} == {
            phone_of(i) for i in range(COUNT)
        }
        twice = {text: n for text, n in received.items() if n > 1}
        assert sum(n - 1 for n in twice.values()) <= DUPLICATE_BOUND
        assert set(twice) <= set(sent_before_kill)
    finally:
        await engine.dispose()
