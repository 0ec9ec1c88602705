"""`kill -9` of `smsline serve` in the middle of a campaign: after a restart every recipient has
their SMS, and only SMS whose outcome was not yet recorded at the kill may arrive twice."""

from __future__ import annotations

import os
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
from tests.line.conftest import eventually
from tests.line.test_crash import DUPLICATE_BOUND, serve
from tests.test_serve import free_port

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

        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
        env.update(
            SMSLINE_DATABASE_URL=database_url,
            SMSLINE_SMSC_HOST="127.0.0.1",
            SMSLINE_SMSC_PORT=str(simulator.port),
            SMSLINE_HTTP_PORT=str(free_port()),
            SMSLINE_LOG_LEVEL="WARNING",
        )
        simulator.set_faults(response_delay=0.02)  # keeps the window full: the kill lands mid-flight
        async with serve(env) as first:
            await simulator.wait_bound(30)

            async def some_sent() -> bool:
                return len(simulator.submits) >= COUNT // 4

            await eventually(some_sent, timeout=60)
            first.kill()
            await first.wait()
        sent_before_kill = Counter(m.text for m in simulator.messages)
        assert len(sent_before_kill) < COUNT, "the kill came too late to test anything"
        simulator.clear_faults()

        async with serve(env) as second:

            async def finished() -> bool:
                return await state_of(engine, campaign_id) == "completed"

            await eventually(finished, timeout=90)
            second.terminate()
            assert await second.wait() == 0

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
