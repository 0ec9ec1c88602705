"""``python -m bench``: run the benchmark suites and print their figures.

``--quick`` makes a short smoke run; ``--only NAME`` (repeatable) picks a suite or one
measurement of a suite.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bench import campaigns, codec, customers_import, kannel, link, notifications, requests_by_sms
from bench.report import facts, heading, machine_facts


@dataclass(frozen=True)
class Suite:
    name: str
    measurements: tuple[str, ...]
    run: Callable[..., Awaitable[requests_by_sms.SuiteResult]]


SUITES = [
    Suite(requests_by_sms.NAME, requests_by_sms.MEASUREMENTS, requests_by_sms.run),
    Suite(notifications.NAME, notifications.MEASUREMENTS, notifications.run),
    Suite(link.NAME, link.MEASUREMENTS, link.run),
    Suite(codec.NAME, codec.MEASUREMENTS, codec.suite),
    Suite(customers_import.NAME, customers_import.MEASUREMENTS, customers_import.run),
    Suite(campaigns.NAME, campaigns.MEASUREMENTS, campaigns.run),
    Suite(kannel.NAME, kannel.MEASUREMENTS, kannel.run),
]


def selection(names: Sequence[str]) -> dict[str, frozenset[str]]:
    """Suite name -> the measurements to run (empty set: all of them)."""
    if not names:
        return {s.name: frozenset() for s in SUITES}
    chosen: dict[str, set[str]] = {}
    for name in names:
        for suite in SUITES:
            if name == suite.name:
                chosen[suite.name] = set()
                break
            if name in suite.measurements:
                if chosen.get(suite.name) != set():
                    chosen.setdefault(suite.name, set()).add(name)
                break
        else:
            known = [s.name for s in SUITES] + [m for s in SUITES for m in s.measurements]
            raise SystemExit(f"unknown benchmark {name!r}; choose from: {', '.join(known)}")
    return {name: frozenset(measurements) for name, measurements in chosen.items()}


async def run_all(quick: bool, chosen: dict[str, frozenset[str]]) -> int:
    started = time.monotonic()
    print(heading("smsline benchmarks" + (" (quick smoke run)" if quick else "")))
    print(facts(machine_facts()), flush=True)
    summary: list[str] = []
    ok = True
    for suite in SUITES:
        if suite.name not in chosen:
            continue
        result = await suite.run(quick=quick, only=chosen[suite.name])
        summary.extend(result.summary)
        ok = ok and result.ok
    print(heading("Summary (for the README)"))
    for line in summary:
        print(f"- {line}")
    print(f"\n(finished in {time.monotonic() - started:.0f} s)")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run with small durations")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME",
        help="run only this suite or measurement (repeatable): "
        + ", ".join([s.name for s in SUITES] + [m for s in SUITES for m in s.measurements]),
    )
    args = parser.parse_args(argv)
    chosen = selection(args.only)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_all(args.quick, chosen))
    return uvloop.run(run_all(args.quick, chosen))


if __name__ == "__main__":
    sys.exit(main())
