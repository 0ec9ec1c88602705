"""PDU codec micro-benchmark: encode and decode rates of the hot PDUs, smsline's fast path against
the smpp.pdu3 codec it stands in for.

Each figure is the best of several timed runs of the same call on one PDU (or its bytes), with the
garbage collector off, in operations per second of one CPU core.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.report import heading, rate, table
from bench.requests_by_sms import SuiteResult
from smsline.smpp import pdus

NAME = "codec"
MEASUREMENTS: tuple[str, ...] = ()

QUICK_CALLS, QUICK_REPEATS = 2_000, 3
FULL_CALLS, FULL_REPEATS = 20_000, 5


@dataclass(frozen=True)
class Row:
    name: str
    encode_fast: float
    encode_codec: float
    decode_fast: float
    decode_codec: float


def samples() -> list[tuple[str, Any]]:
    """The PDUs smsline sends and receives most, as its builders make them."""
    request = pdus.submit_sm(
        source="79086228779", source_ton=pdus.TON_INTERNATIONAL, source_npi=pdus.NPI_ISDN,
        destination="79001234567", data_coding=0, short_message=b"Your request is accepted. " * 6,
    )
    built = [
        ("submit_sm", request),
        ("submit_sm ucs2+sar", pdus.submit_sm(
            source="Shop", source_ton=pdus.TON_ALPHANUMERIC, source_npi=pdus.NPI_UNKNOWN,
            destination="79001234567", data_coding=8, short_message="Заказ принят".encode("utf-16-be"),
            sar=pdus.Sar(17, 2, 1),
        )),
        ("submit_sm_resp", pdus.submit_sm_resp(request, message_id="0f3a9c51-77d2")),
        ("submit_sm_resp error", pdus.submit_sm_resp(request, status=pdus.ESME_RTHROTTLED)),
        ("deliver_sm", pdus.deliver_sm(
            source="79001234567", source_ton=pdus.TON_INTERNATIONAL, destination="79086228779",
            data_coding=0, short_message=b"CLIENT info",
        )),
        ("deliver_sm receipt", pdus.deliver_sm(
            source="79001234567", source_ton=pdus.TON_INTERNATIONAL, destination="79086228779",
            data_coding=0, receipt=True, receipted_message_id="0f3a9c51-77d2", message_state=2,
            short_message=b"id:0f3a9c51-77d2 sub:001 dlvrd:001 submit date:2401011200 "
            b"done date:2401011201 stat:DELIVRD err:000 text:",
        )),
        ("deliver_sm_resp", pdus.deliver_sm_resp(request)),
        ("enquire_link", pdus.enquire_link()),
        ("enquire_link_resp", pdus.enquire_link_resp(request)),
        ("generic_nack", pdus.generic_nack(0, pdus.ESME_RINVCMDID)),
    ]
    for sequence, (_, pdu) in enumerate(built, start=1):
        if pdu.seqNum is None:
            pdu.seqNum = sequence
    return built


def per_second(call: Callable[[], object], calls: int, repeats: int) -> float:
    best = min(timeit.Timer(call).repeat(repeat=repeats, number=calls))
    return calls / best


def measure(quick: bool) -> list[Row]:
    calls, repeats = (QUICK_CALLS, QUICK_REPEATS) if quick else (FULL_CALLS, FULL_REPEATS)
    rows = []
    for name, pdu in samples():
        frame = pdus.encode(pdu)
        if frame != pdus._codec_encode(pdu):
            raise AssertionError(f"{name}: the fast path's bytes differ from the codec's")
        if pdus._fast_encode(pdu) is None or pdus._fast_decode(frame) is None:
            raise AssertionError(f"{name}: not taken by the fast path")
        rows.append(
            Row(
                name,
                per_second(partial(pdus.encode, pdu), calls, repeats),
                per_second(partial(pdus._codec_encode, pdu), calls, repeats),
                per_second(partial(pdus.decode, frame), calls, repeats),
                per_second(partial(pdus._codec_decode, frame), calls, repeats),
            )
        )
    return rows


def report(quick: bool) -> list[str]:
    """Measure, print the table and return the summary lines."""
    print(heading("PDU codec: fast path vs smpp.pdu3" + (" (quick)" if quick else "")), flush=True)
    rows = measure(quick)
    print(
        table(
            ["PDU", "encode/s", "codec encode/s", "×", "decode/s", "codec decode/s", "×"],
            [
                [
                    row.name,
                    rate(row.encode_fast),
                    rate(row.encode_codec),
                    f"{row.encode_fast / row.encode_codec:.1f}",
                    rate(row.decode_fast),
                    rate(row.decode_codec),
                    f"{row.decode_fast / row.decode_codec:.1f}",
                ]
                for row in rows
            ],
        ),
        flush=True,
    )
    summary = []
    for row in rows:
        if row.name in ("submit_sm", "deliver_sm", "submit_sm_resp", "deliver_sm_resp"):
            summary.append(
                f"codec {row.name}: encode {1e6 / row.encode_fast:.1f} µs "
                f"({row.encode_fast / row.encode_codec:.1f}× smpp.pdu3), "
                f"decode {1e6 / row.decode_fast:.1f} µs ({row.decode_fast / row.decode_codec:.1f}× smpp.pdu3)"
            )
    return summary


def run(quick: bool) -> None:
    report(quick)


async def suite(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    return SuiteResult(summary=report(quick), ok=True)


if __name__ == "__main__":
    run(quick=False)
