"""Property: any text smsline sends reaches the handset exactly as written, in every long-message
mode — segmented by the dispatcher, submitted by the connector, reassembled by the simulator."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsline.config import LongMessageMode, Settings
from smsline.domain.gsm7 import BASIC_CHARACTERS, EXTENSION_CHARACTERS
from smsline.line.direct import send_text
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator
from tests.line.conftest import service_settings

GSM7_ALPHABET = "".join(sorted(BASIC_CHARACTERS | EXTENSION_CHARACTERS))

# Long enough for several parts with escape sequences and surrogate pairs at the cuts; no NUL
# (PostgreSQL text cannot hold it) and no lone surrogates (no encoding can carry them).
texts = st.one_of(
    st.text(alphabet=GSM7_ALPHABET, min_size=1, max_size=480),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
            min_size=1, max_size=240),
    st.text(alphabet=st.sampled_from("aé€{😀Ж ^\\|~[]"), min_size=150, max_size=340),
).filter(lambda text: text.strip() != "")

_phones = itertools.count(79_160_000_000)


@pytest.fixture(params=["udh8", "udh16", "sar", "payload"])
def mode(request: pytest.FixtureRequest) -> LongMessageMode:
    value: LongMessageMode = request.param
    return value


@pytest.fixture
def mode_settings(database_url: str, simulator: Simulator, mode: LongMessageMode) -> Settings:
    settings = service_settings(database_url, simulator.port)
    settings.smsc[0] = settings.smsc[0].model_copy(update={"long_messages": mode})
    return settings


@pytest.fixture
async def mode_service(mode_settings: Settings) -> AsyncIterator[Service]:
    async with running(mode_settings, http=False) as service:
        await service.wait_bound(10)
        yield service


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(text=texts)
async def test_any_text_reaches_the_handset_exactly(
    mode_service: Service, mode_settings: Settings, simulator: Simulator, mode: LongMessageMode, text: str
) -> None:
    # One service and one bind serve every example; each goes to a phone of its own.
    phone = f"+{next(_phones)}"
    after = simulator.last_message_id
    assert mode_service.engine is not None
    await send_text(mode_service.engine, mode_settings, phone, text)
    mode_service.dispatcher.wake()

    [sms] = await simulator.messages_after(after, destination=phone, timeout=10)

    assert sms.text == text
    if mode == "payload":
        assert len(sms.parts) == 1
