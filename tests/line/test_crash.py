"""`kill -9` in the middle of sending: after a restart every message reaches its handset, and only
messages whose outcome was not yet recorded at the moment of the kill may arrive twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import func, insert, select

from smsline.config import SmscSettings
from smsline.db.engine import create_oneshot_engine
from smsline.db.schema import outbox
from smsline.line.dispatcher import UNRECORDED_PER_WINDOW_SLOT
from smsline.line.outbox import Kind, Priority, outbox_row
from smsline.smpp.simulator import Simulator
from tests.line.conftest import eventually
from tests.test_serve import SMSLINE, free_port

COUNT = 1500
WINDOW = SmscSettings().window  # the default window of the one bind `serve` makes from the env
# README, "Delivery guarantees": in flight (the window) + answered but not yet recorded (4 × it).
DUPLICATE_BOUND = (1 + UNRECORDED_PER_WINDOW_SLOT) * WINDOW


@asynccontextmanager
async def serve(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        SMSLINE, "serve", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def serve_env(database_url: str, simulator: Simulator) -> dict[str, str]:
    """`smsline serve` on that database, bound to the simulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
    env.update(
        SMSLINE_DATABASE_URL=database_url,
        SMSLINE_SMSC_HOST="127.0.0.1",
        SMSLINE_SMSC_PORT=str(simulator.port),
        SMSLINE_HTTP_PORT=str(free_port()),
        SMSLINE_LOG_LEVEL="WARNING",
    )
    return env


async def kill_mid_send_and_restart(
    simulator: Simulator, env: dict[str, str], count: int, done: Callable[[], Awaitable[bool]]
) -> Counter[str]:
    """Start `smsline serve`, SIGKILL it once a quarter of ``count`` messages reached the SMSC
    (slow answers keep the window full, so the kill lands with submits in flight), start it
    again and let it finish until ``done``, then stop it gracefully. Returns the texts the SMSC
    had received before the kill."""
    simulator.set_faults(response_delay=0.02)
    async with serve(env) as first:
        await simulator.wait_bound(30)

        async def some_sent() -> bool:
            return len(simulator.submits) >= count // 4

        await eventually(some_sent, timeout=60)
        first.kill()
        await first.wait()
    sent_before_kill = Counter(sms.text for sms in simulator.messages)
    assert len(sent_before_kill) < count, "the kill came too late to test anything"
    simulator.clear_faults()
    async with serve(env) as second:
        await eventually(done, timeout=90)
        second.terminate()
        assert await second.wait() == 0
    return sent_before_kill


@pytest.mark.slow
async def test_kill_9_mid_send_loses_nothing_and_resends_only_what_was_in_flight(
    database_url: str, simulator: Simulator
) -> None:
    engine = create_oneshot_engine(database_url)
    texts = [f"Message {i:05d} of the crash test" for i in range(COUNT)]
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(outbox),
            [
                outbox_row(
                    kind=Kind.DIRECT,
                    priority=Priority.NOTIFICATION,
                    sender="SCSERV",
                    destination="+79161230000",
                    text=text,
                    language="en",
                    now=now,
                )
                for text in texts
            ],
        )
    env = serve_env(database_url, simulator)

    async def delivered() -> int:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).select_from(outbox).where(outbox.c.status == "delivered")
                    )
                ).scalar_one()
            )

    try:
        async def all_delivered() -> bool:
            return await delivered() == COUNT

        sent_before_kill = await kill_mid_send_and_restart(simulator, env, COUNT, all_delivered)
        received = Counter(sms.text for sms in simulator.messages)
        assert set(received) == set(texts)  # nothing lost
        twice = {text: n for text, n in received.items() if n > 1}
        assert sum(n - 1 for n in twice.values()) <= DUPLICATE_BOUND
        # Only a message that had reached the SMSC before the kill can have been sent again.
        assert set(twice) <= set(sent_before_kill)
    finally:
        await engine.dispose()
