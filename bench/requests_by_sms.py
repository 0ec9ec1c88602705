"""Requests by SMS (SPEC §1) end to end: acknowledgement latency, the highest sustained request
rate, and ``CLIENT info`` on its own.

The bench process plays the operator's network: it hosts the SMSC simulator, injects the
customers' MO messages and watches the SMS that come back. smsline runs as a separate
``smsline serve`` process, exactly as in production, bound to that simulator over SMPP on
127.0.0.1 with a SQLite database of generated customers.

Latency of a request is measured on the SMSC side, from the moment the simulator wrote the MO's
``deliver_sm`` to the link to the moment it received the ``submit_sm`` of the acknowledgement to
that phone. Every request comes from a phone never used before in the run, so nothing is
deduplicated or rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import math
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from bench.processes import cpu_seconds, stop_gracefully
from bench.report import facts, filesystem_of, heading, ms, percentile, rate, source_revision, table
from smsline.domain.texts import ack_text, info_text, sms_started_text, sms_stopped_text
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.simulator import ReceivedSms, Simulator, _SmscSession, digits

NAME = "requests_by_sms"
MEASUREMENTS = ("ack-latency", "max-rate", "info")

SERVICE_NUMBER = "+79086228779"
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
SMSLINE = Path(sys.executable).parent / "smsline"

ACK_P99_TARGET = 0.050
RATE_TARGET = 1000
STEP_ACK_P99_LIMIT = 1.0
REPLY_DEADLINE = 10.0
LOWER_RATES = (200, 150, 100, 50)
KEPT_UP_SHARE = 0.95
TICK = 0.001
BENCH_BUSY = 0.85
POLL_INTERVAL = 0.05
DRIVER_TOLERANCE = 0.97
INFO_PROBE_SECONDS_MAX = 60.0
GENEROUS_LIMIT = "1000000"

Command = Literal["stop", "start", "info"]
TEXTS: dict[Command, str] = {
    "stop": "CLIENT sms stop",
    "start": "CLIENT sms start",
    "info": "CLIENT info",
}
ACK_TEXT = ack_text("en")
ANSWERS: dict[Command, str] = {"stop": sms_stopped_text("en"), "start": sms_started_text("en")}


@dataclass(frozen=True)
class Plan:
    latency_rate: float
    latency_seconds: float
    step_rates: tuple[int, ...]
    step_seconds: float
    info_requests: int
    probe_rate: float

    def phones_needed(self) -> int:
        count = self.latency_rate * self.latency_seconds
        count += (sum(self.step_rates) + sum(LOWER_RATES)) * self.step_seconds
        count += self.info_requests + self.probe_rate * INFO_PROBE_SECONDS_MAX
        return int(math.ceil(count * 1.02 / 1000) * 1000)


FULL = Plan(
    latency_rate=200,
    latency_seconds=30,
    step_rates=(250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000),
    step_seconds=10,
    info_requests=500,
    probe_rate=20,
)
QUICK = Plan(
    latency_rate=200,
    latency_seconds=5,
    step_rates=FULL.step_rates,
    step_seconds=5,
    info_requests=100,
    probe_rate=20,
)


# -- customers ---------------------------------------------------------------------------------


def phone_of(index: int) -> str:
    return f"+7916{index:07d}"


def personal_code_of(index: int) -> str:
    return f"{index * 7919 % 10000:04d}"


def login_of(index: int) -> str:
    return f"user{index}"


def write_customers(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "phone", "personal_code", "login"])
        for index in range(count):
            writer.writerow([f"bench-{index}", phone_of(index), personal_code_of(index), login_of(index)])


class Phones:
    """Hands out each customer's phone once."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.used = 0

    def take(self, n: int) -> range:
        if self.used + n > self.count:
            raise RuntimeError(f"out of fresh phones: {n} wanted, {self.count - self.used} left")
        taken = range(self.used, self.used + n)
        self.used += n
        return taken


# -- the SMSC side -------------------------------------------------------------------------------


class _TracedSession(_SmscSession):
    """An SMSC session that notes when each MO ``deliver_sm`` goes out on the link."""

    written: dict[str, float]

    def _write(self, pdu: Pdu) -> None:
        if pdus.command_name(pdu) == "deliver_sm" and not pdus.is_delivery_receipt(pdu):
            self.written.setdefault(pdus.str_param(pdu, "source_addr"), time.monotonic())
        super()._write(pdu)


class MeasuringSimulator(Simulator):
    """The SMSC simulator, plus the time each MO was first written to an ESME, by sender."""

    def __init__(self) -> None:
        super().__init__()
        self.mo_written: dict[str, float] = {}

    def _new_session(self) -> _SmscSession:
        session = super()._new_session()
        session.__class__ = _TracedSession
        assert isinstance(session, _TracedSession)
        session.written = self.mo_written
        return session


@dataclass(slots=True)
class Request:
    customer: int
    command: Command
    phone: str = ""
    delivery: int = 0
    injected: float = math.nan
    written: float = math.nan
    stored: float = math.nan
    ack: float = math.nan
    answer: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return TEXTS[self.command]

    @property
    def answered(self) -> bool:
        return not math.isnan(self.answer)

    @property
    def complete(self) -> bool:
        return not math.isnan(self.ack) and not math.isnan(self.answer)

    def expects(self, text: str) -> bool:
        if self.command != "info":
            return text == ANSWERS[self.command]
        marker = "\x00"
        before, after = info_text(
            "en",
            personal_code=personal_code_of(self.customer),
            login=login_of(self.customer),
            password=marker,
        ).split(marker)
        password = text[len(before) : len(text) - len(after)]
        return (
            text.startswith(before)
            and text.endswith(after)
            and len(password) == 8
            and password.isalnum()
        )


def make_requests(customers: range, commands: Callable[[int], Command]) -> list[Request]:
    return [
        Request(customer=c, command=commands(i), phone=phone_of(c)) for i, c in enumerate(customers)
    ]


def alternating(i: int) -> Command:
    return "stop" if i % 2 == 0 else "start"


def mixed(i: int) -> Command:
    """49% stop, 49% start, 2% info."""
    if i % 50 == 25:
        return "info"
    return "stop" if i % 2 == 0 else "start"


class Observer:
    """Matches what the simulator saw back to the requests: MO stored, acknowledgement, answer."""

    def __init__(self, simulator: MeasuringSimulator) -> None:
        self.simulator = simulator
        self.by_phone: dict[str, Request] = {}
        self.by_delivery: dict[int, Request] = {}
        self.strays = 0
        self.mo_errors = 0
        self._messages = 0
        self._deliveries = 0

    def track(self, request: Request) -> None:
        self.by_phone[digits(request.phone)] = request
        self.by_delivery[request.delivery] = request

    def poll(self) -> None:
        messages = self.simulator.messages
        end = len(messages)
        for sms in messages[self._messages : end]:
            self._on_message(sms)
        self._messages = end
        deliveries = self.simulator.deliveries
        end = len(deliveries)
        for attempt in deliveries[self._deliveries : end]:
            if attempt.kind != "mo":
                continue
            if attempt.outcome != "ok":
                self.mo_errors += 1
                continue
            request = self.by_delivery.get(attempt.delivery_id)
            if request is not None and math.isnan(request.stored):
                request.stored = attempt.at
        self._deliveries = end

    def fill_written(self, requests: Sequence[Request]) -> None:
        written = self.simulator.mo_written
        for request in requests:
            if math.isnan(request.written):
                request.written = written.get(digits(request.phone), math.nan)

    def _on_message(self, sms: ReceivedSms) -> None:
        request = self.by_phone.get(digits(sms.destination))
        if request is None:
            self.strays += 1
            return
        text = sms.text
        if text == ACK_TEXT:
            if math.isnan(request.ack):
                request.ack = sms.parts[0].received_at
            else:
                request.problems.append("acknowledged twice")
            return
        if not request.expects(text):
            request.problems.append(f"unexpected reply {text[:50]!r}")
            return
        if request.answered:
            request.problems.append("answered twice")
            return
        if math.isnan(request.ack):
            request.problems.append("answered before the acknowledgement")
        request.answer = sms.completed_at


# -- the service under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``smsline serve`` as its own process, with its own database, bound to our simulator."""

    def __init__(self, workdir: Path, smsc_port: int) -> None:
        self.workdir = workdir
        self.database = workdir / "bench.db"
        self.log_path = workdir / "serve.log"
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
        self.env.update(
            {
                "SMSLINE_DATABASE_URL": f"sqlite:///{self.database}",
                "SMSLINE_SMSC_HOST": HOST,
                "SMSLINE_SMSC_PORT": str(smsc_port),
                "SMSLINE_HTTP_HOST": HOST,
                "SMSLINE_HTTP_PORT": str(self.http_port),
                "SMSLINE_SERVICE_NUMBER": SERVICE_NUMBER,
                "SMSLINE_LOG_LEVEL": "WARNING",
                "SMSLINE_LIMIT_INFO_PER_HOUR": GENEROUS_LIMIT,
                "SMSLINE_LIMIT_INFO_PER_DAY": GENEROUS_LIMIT,
                "SMSLINE_LIMIT_ANY_PER_DAY": GENEROUS_LIMIT,
            }
        )
        self.process: asyncio.subprocess.Process | None = None
        self._log_file: int | None = None

    async def command(self, *args: str, timeout: float = 600.0) -> str:
        process = await asyncio.create_subprocess_exec(
            str(SMSLINE), *args, env=self.env, cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"smsline {' '.join(args)} did not finish in {timeout:g}s") from None
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise RuntimeError(f"smsline {' '.join(args)} exited {process.returncode}:\n{text}")
        return text

    async def prepare(self, customers: int) -> float:
        """Migrate the database and import the customers; returns the seconds the import took."""
        await self.command("db", "upgrade")
        csv_path = self.workdir / "customers.csv"
        await asyncio.to_thread(write_customers, csv_path, customers)
        started = time.monotonic()
        await self.command("customers", "import", str(csv_path))
        return time.monotonic() - started

    async def start(self) -> None:
        self._log_file = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.process = await asyncio.create_subprocess_exec(
            str(SMSLINE), "serve", env=self.env, cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def cpu_seconds(self) -> float:
        """User plus system CPU time the service process and its children (the API process,
        with ``api_process``) have used, all threads."""
        if self.process is None:
            return math.nan
        return cpu_seconds(self.process.pid)

    async def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait; the exit code, or None when it had to be killed."""
        process = self.process
        if process is None:
            return None
        code = await stop_gracefully(process, timeout)
        if self._log_file is not None:
            os.close(self._log_file)
            self._log_file = None
        return code

    def log_tail(self, lines: int = 15) -> list[str]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]


# -- driving traffic -----------------------------------------------------------------------------------


@dataclass
class Drive:
    offered: float
    sent: int = 0
    first: float = math.nan
    last: float = math.nan
    max_behind: float = 0.0
    stopped_early: bool = False

    @property
    def achieved(self) -> float:
        if self.sent < 2 or self.last <= self.first:
            return math.nan
        return (self.sent - 1) / (self.last - self.first)

    @property
    def kept_up(self) -> bool:
        if math.isinf(self.offered):
            return True
        return self.sent > 0 and not self.stopped_early and self.achieved >= self.offered * DRIVER_TOLERANCE


@dataclass
class Step:
    offered: int
    row: list[str]
    reasons: list[str]
    driver_kept_up: bool
    no_backlog: bool
    bench_busy: bool

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass
class Window:
    """One run of traffic and what came of it."""

    requests: list[Request]
    drive: Drive
    bench_cpu: float
    service_cpu: float
    deadline: float
    settled: bool
    bench_cpu_per_request: float = math.nan
    """CPU seconds the bench spent per request, from the first injection to the last answer."""

    def on_time(self) -> list[Request]:
        return [r for r in self.requests if r.complete and r.answer <= self.deadline]

    def latencies(self, start: str, end: str) -> list[float]:
        values = []
        for r in self.requests:
            value = getattr(r, end) - getattr(r, start)
            if not math.isnan(value):
                values.append(value)
        return values

    def problems(self) -> list[str]:
        return [f"{r.phone}: {p}" for r in self.requests for p in r.problems]

    def stored_rate(self) -> float:
        stored = [r.stored for r in self.requests if not math.isnan(r.stored)]
        if len(stored) < 2 or math.isnan(self.drive.first):
            return math.nan
        return len(stored) / (max(stored) - self.drive.first)

    def replies_rate(self) -> float:
        times = [t for r in self.requests for t in (r.ack, r.answer) if not math.isnan(t)]
        if not times or math.isnan(self.drive.first):
            return math.nan
        return len(times) / (max(times) - self.drive.first)

    def last_reply_after_end(self) -> float:
        answers = [r.answer for r in self.requests if not math.isnan(r.answer)]
        if not answers or math.isnan(self.drive.last):
            return math.nan
        return max(answers) - self.drive.last


class Bench:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.simulator = MeasuringSimulator()
        self.observer = Observer(self.simulator)
        self.phones = Phones(plan.phones_needed())
        self.service: ServiceProcess | None = None

    @property
    def svc(self) -> ServiceProcess:
        assert self.service is not None
        return self.service

    async def drive(
        self,
        requests: Sequence[Request],
        offered: float,
        *,
        stop: Callable[[], bool] | None = None,
    ) -> Drive:
        """Inject ``requests`` at ``offered`` per second on an absolute schedule (inf: at once)."""
        loop = asyncio.get_running_loop()
        simulator, observer = self.simulator, self.observer
        result = Drive(offered=offered)
        total = len(requests)
        interval = 0.0 if math.isinf(offered) else 1.0 / offered
        start = loop.time() + 0.02
        hard_stop = start + total * interval * 2 + 10.0
        i = 0
        while i < total:
            now = loop.time()
            if now > hard_stop or (stop is not None and stop()):
                break
            due = start + i * interval
            if due - now >= TICK:
                await asyncio.sleep(due - now)
                continue
            result.max_behind = max(result.max_behind, now - due)
            horizon = now + TICK
            while i < total and start + i * interval < horizon:
                request = requests[i]
                request.injected = time.monotonic()
                ids = await simulator.inject_mo(request.phone, request.text, SERVICE_NUMBER)
                request.delivery = ids[0]
                observer.track(request)
                i += 1
            await asyncio.sleep(0)
        result.stopped_early = i < total
        result.sent = i
        if i:
            result.first = requests[0].injected
            result.last = requests[i - 1].injected
        return result

    async def settle(self, requests: Sequence[Request], until: float) -> bool:
        """Wait until every request has both replies, or ``until`` (monotonic) passes."""
        pending = list(requests)
        polls = max(0, math.ceil((until - time.monotonic()) / POLL_INTERVAL)) + 1
        for _ in range(polls):
            self.observer.poll()
            pending = [r for r in pending if not r.complete]
            if not pending:
                return True
            if time.monotonic() >= until:
                break
            await asyncio.sleep(POLL_INTERVAL)
        return False

    async def quiesce(self, timeout: float = 10.0) -> None:
        """Let the receipts of the last run reach smsline before the next one starts; collect
        the bench's garbage now rather than during a measurement."""
        with contextlib.suppress(TimeoutError):
            await self.simulator.wait_delivered(timeout)
        await asyncio.sleep(0.5)
        self.observer.poll()
        gc.collect()

    async def run_traffic(
        self, requests: list[Request], offered: float, *, settle_for: float = REPLY_DEADLINE
    ) -> Window:
        cpu_bench, cpu_service = time.process_time(), self.svc.cpu_seconds()
        drive = await self.drive(requests, offered)
        bench_cpu = service_cpu = math.nan
        span = drive.last - drive.first
        if span > 0:
            bench_cpu = (time.process_time() - cpu_bench) / span
            service_cpu = (self.svc.cpu_seconds() - cpu_service) / span
        deadline = (drive.last if drive.sent else time.monotonic()) + settle_for
        settled = await self.settle(requests[: drive.sent], deadline)
        per_request = (time.process_time() - cpu_bench) / drive.sent if drive.sent else math.nan
        self.observer.fill_written(requests)
        return Window(
            requests[: drive.sent], drive, bench_cpu, service_cpu, deadline, settled, per_request
        )

    # -- measurements ------------------------------------------------------------------------------

    async def ack_latency(self) -> str:
        plan = self.plan
        count = int(plan.latency_rate * plan.latency_seconds)
        requests = make_requests(self.phones.take(count), alternating)
        print(heading(f"1. Acknowledgement latency at {plan.latency_rate:g} requests/s for "
                      f"{plan.latency_seconds:g} s (SQLite)"), flush=True)
        window = await self.run_traffic(requests, plan.latency_rate)
        await self.quiesce()
        acks = window.latencies("written", "ack")
        rows = []
        for label, start, end in (
            ("MO injected -> deliver_sm written (simulator queue)", "injected", "written"),
            ("deliver_sm written -> deliver_sm_resp (stored)", "written", "stored"),
            ("deliver_sm written -> ack submit_sm  [the figure]", "written", "ack"),
            ("ack submit_sm -> answer received", "ack", "answer"),
            ("deliver_sm written -> answer received", "written", "answer"),
            ("MO injected -> ack submit_sm (as the handset sees it)", "injected", "ack"),
        ):
            values = window.latencies(start, end)
            rows.append([label, len(values), ms(percentile(values, 50)), ms(percentile(values, 99)),
                         ms(max(values, default=math.nan))])
        print(table(["interval", "count", "median ms", "p99 ms", "max ms"], rows))
        on_time = len(window.on_time())
        p50, p99, worst = percentile(acks, 50), percentile(acks, 99), max(acks, default=math.nan)
        print()
        print(facts([
            *self._traffic_facts(window),
            ("both replies within 10 s", f"{on_time}/{count} ({'yes' if on_time == count else 'NO'})"),
            ("ack p99 target", f"< {ACK_P99_TARGET * 1000:g} ms: "
                               f"{'met' if p99 < ACK_P99_TARGET else 'MISSED'}"),
        ]))
        self._print_problems(window)
        return (
            f"Acknowledgement latency at {plan.latency_rate:g} requests/s for {plan.latency_seconds:g} s "
            f"(SQLite): median {ms(p50)} ms, p99 {ms(p99)} ms, max {ms(worst)} ms over {len(acks)} "
            f"requests; {on_time}/{count} got both replies within 10 s."
        )

    async def step(self, offered: int) -> Step:
        """One step of the rate search: ``offered`` requests/s for the plan's step duration."""
        count = int(offered * self.plan.step_seconds)
        requests = make_requests(self.phones.take(count), mixed)
        window = await self.run_traffic(requests, offered)
        acks = window.latencies("written", "ack")
        p99 = percentile(acks, 99)
        on_time = len(window.on_time())
        reasons = []
        if on_time < count:
            reasons.append(f"{count - on_time} of {count} not answered within {REPLY_DEADLINE:g} s")
        if not p99 < STEP_ACK_P99_LIMIT:
            reasons.append(f"ack p99 {ms(p99)} ms")
        if window.problems():
            reasons.append(f"{len(window.problems())} wrong replies")
        e2e_p99 = percentile(window.latencies("injected", "ack"), 99)
        no_backlog = window.stored_rate() >= offered * KEPT_UP_SHARE and e2e_p99 < STEP_ACK_P99_LIMIT
        verdict = "pass" if not reasons else "FAIL"
        if not window.drive.kept_up:
            verdict += " (driver behind)"
        elif window.bench_cpu >= BENCH_BUSY:
            verdict += " (bench busy)"
        row = [
            f"{offered:,}", f"{count:,}", rate(window.drive.achieved), rate(window.stored_rate()),
            ms(percentile(acks, 50)), ms(p99), ms(max(acks, default=math.nan)),
            ms(e2e_p99), rate(window.replies_rate()), f"{on_time:,}",
            f"{window.last_reply_after_end():.1f}", _percent(window.bench_cpu),
            _percent(window.service_cpu), "yes" if no_backlog else "NO", verdict,
        ]
        print(f"  step {offered:,}/s: {verdict}" + (f" — {'; '.join(reasons)}" if reasons else ""),
              flush=True)
        self._print_problems(window)
        if reasons:
            await self.settle(requests, time.monotonic() + 120.0)
            await self.quiesce(30.0)
        else:
            await self.quiesce()
        return Step(
            offered, row, reasons, window.drive.kept_up, no_backlog, window.bench_cpu >= BENCH_BUSY
        )

    async def max_rate(self) -> str:
        plan = self.plan
        print(heading(f"2. Highest sustained request rate (SQLite; steps of {plan.step_seconds:g} s; "
                      f"49% stop, 49% start, 2% info)"), flush=True)
        print(f"  A step passes when every request gets both replies within {REPLY_DEADLINE:g} s after "
              f"the step ends and the ack p99 is under {STEP_ACK_P99_LIMIT * 1000:g} ms; the search stops "
              f"at the first failing step.", flush=True)
        steps: list[Step] = []
        for offered in plan.step_rates:
            steps.append(await self.step(offered))
            if not steps[-1].passed:
                break
        if not any(s.passed and s.no_backlog for s in steps):
            print("  no step was kept up with: trying lower rates until one passes with no backlog",
                  flush=True)
            for offered in LOWER_RATES:
                if offered < plan.step_rates[0]:
                    steps.append(await self.step(offered))
                    if steps[-1].passed and steps[-1].no_backlog:
                        break
        headers = ["offered/s", "requests", "injected/s", "stored/s", "ack p50", "ack p99", "ack max",
                   "e2e p99", "replies/s", "answered", "drain s", "bench CPU", "smsline CPU", "kept up",
                   "result"]
        print()
        print(table(headers, [s.row for s in steps]))
        print()
        print(facts([
            ("latencies", "milliseconds; ack = deliver_sm written -> ack submit_sm received"),
            ("e2e p99", "MO injected -> ack submit_sm: includes waiting in the SMSC for its window"),
            ("injected/s", "MO rate the bench achieved (offered vs achieved: the driver's own limit)"),
            ("stored/s", "MOs answered with deliver_sm_resp per second, from the first injection"),
            ("replies/s", "acknowledgements + answers received per second, from the first injection"),
            ("drain s", "seconds from the last injection to the last answer"),
            ("CPU", "share of one core during injection (bench: simulator + driver)"),
            ("kept up", f"stored/s >= {KEPT_UP_SHARE:.0%} of offered and e2e p99 < "
                        f"{STEP_ACK_P99_LIMIT * 1000:g} ms: no backlog building up in the SMSC"),
        ]))
        behind = [s.offered for s in steps if not s.driver_kept_up]
        if behind:
            print(f"  NOTE: the driver could not keep the offered rate at {behind} requests/s; those "
                  f"steps measured what the bench could offer (see injected/s).")
        busy = [s.offered for s in steps if s.bench_busy]
        if busy:
            print(f"  NOTE: the bench used {BENCH_BUSY:.0%} or more of a core at {busy} requests/s: "
                  f"the simulator may have limited those steps.")
        passed = [s.offered for s in steps if s.passed]
        failed = [s for s in steps if not s.passed]
        best = max(passed) if passed else None
        failure = ""
        if failed:
            first = min(failed, key=lambda s: s.offered) if best is None else failed[0]
            failure = f"{first.offered:,}/s failed: {'; '.join(first.reasons)}"
        if best is None:
            highest = f"none (lowest rate tried: {min(s.offered for s in steps):,}/s)"
        elif not failed:
            highest = f"at least {best:,} requests/s (every step passed)"
        else:
            highest = f"{best:,} requests/s"
        steady = [s.offered for s in steps if s.passed and s.no_backlog]
        sustained = f"{max(steady):,} requests/s" if steady else "none of the steps tried"
        print()
        print(facts([
            ("highest passing rate", highest),
            ("first failing step", failure or "none"),
            ("highest rate kept up", f"{sustained} (a passing step may still end with a backlog: "
                                     f"the {REPLY_DEADLINE:g} s after it let smsline catch up)"),
            ("target", f">= {RATE_TARGET:,}/s kept up: "
                       f"{'met' if steady and max(steady) >= RATE_TARGET else 'MISSED'}"),
        ]))
        return (
            f"Highest sustained request rate (SQLite, {plan.step_seconds:g} s steps, 49% stop / 49% start "
            f"/ 2% info, both replies within 10 s, ack p99 < 1 s): {highest}"
            + (f"; {failure}" if failure else "")
            + f"; highest rate kept up with no backlog: {sustained}."
        )

    async def info(self) -> str:
        plan = self.plan
        print(heading(f"3. CLIENT info on its own: {plan.info_requests} requests injected at once"),
              flush=True)
        infos = make_requests(self.phones.take(plan.info_requests), lambda _: "info")
        probe_count = int(plan.probe_rate * INFO_PROBE_SECONDS_MAX)
        probes = make_requests(self.phones.take(probe_count), alternating)
        print(f"  with a background of {plan.probe_rate:g} stop/start requests/s until the last "
              f"credential SMS arrives", flush=True)

        def infos_done() -> bool:
            self.observer.poll()
            return all(r.answered for r in infos)

        cpu_bench, cpu_service, started = time.process_time(), self.svc.cpu_seconds(), time.monotonic()
        probe_task = asyncio.get_running_loop().create_task(
            self.drive(probes, plan.probe_rate, stop=infos_done)
        )
        info_drive = await self.drive(infos, math.inf)
        settled = await self.settle(infos, time.monotonic() + INFO_PROBE_SECONDS_MAX)
        probe_drive = await probe_task
        elapsed = time.monotonic() - started
        bench_cpu = (time.process_time() - cpu_bench) / elapsed
        service_cpu = (self.svc.cpu_seconds() - cpu_service) / elapsed
        sent_probes = probes[: probe_drive.sent]
        await self.settle(sent_probes, time.monotonic() + REPLY_DEADLINE)
        self.observer.fill_written(infos + sent_probes)
        info_window = Window(infos, info_drive, bench_cpu, service_cpu, math.inf, settled)
        probe_window = Window(sent_probes, probe_drive, bench_cpu, service_cpu, math.inf, True)
        await self.quiesce()

        answers = [r.answer for r in infos if r.answered]
        span = max(answers) - info_drive.first if answers else math.nan
        info_rate = len(answers) / span if answers else math.nan
        rows = []
        for label, window in (("CLIENT info (burst)", info_window), ("stop/start probes", probe_window)):
            acks = window.latencies("written", "ack")
            answer = window.latencies("written", "answer")
            stored = window.latencies("written", "stored")
            rows.append([label, len(window.requests), sum(r.complete for r in window.requests),
                         ms(percentile(stored, 99)), ms(percentile(acks, 50)), ms(percentile(acks, 99)),
                         ms(max(acks, default=math.nan)), ms(percentile(answer, 50)),
                         ms(max(answer, default=math.nan))])
        print(table(["requests", "sent", "answered", "stored p99 ms", "ack p50 ms", "ack p99 ms",
                     "ack max ms", "answer p50 ms", "answer max ms"], rows))
        print("  (from deliver_sm written; stored = deliver_sm_resp, answer = the last reply SMS)")
        info_acks = info_window.latencies("written", "ack")
        probe_acks = probe_window.latencies("written", "ack")
        print()
        print(facts([
            ("answered info requests/s", f"{rate(info_rate)} ({len(answers)} credential SMS in "
                                         f"{span:.2f} s from the first MO to the last answer)"),
            ("bench CPU", _percent(bench_cpu)),
            ("smsline CPU", _percent(service_cpu)),
        ]))
        self._print_problems(info_window)
        self._print_problems(probe_window)
        return (
            f"CLIENT info alone ({plan.info_requests} at once, SQLite): {rate(info_rate)} answered/s "
            f"(argon2id hashing); ack p99 {ms(percentile(info_acks, 99))} ms for the info requests, "
            f"{ms(percentile(probe_acks, 99))} ms for stop/start requests sent meanwhile."
        )

    def _traffic_facts(self, window: Window) -> list[tuple[str, str]]:
        drive = window.drive
        kept = "yes" if drive.kept_up else "NO: the driver could not keep the offered rate"
        return [
            ("requests", f"{drive.sent:,} offered at {rate(drive.offered)}/s, injected at "
                         f"{rate(drive.achieved)}/s (kept up: {kept}; worst lag {ms(drive.max_behind)} ms)"),
            ("bench CPU", f"{_percent(window.bench_cpu)} of a core (simulator + driver)"),
            ("smsline CPU", f"{_percent(window.service_cpu)} of a core (all threads)"),
            ("bench capacity", f"{ms(window.bench_cpu_per_request)} ms of bench CPU per request: one "
                               f"core drives at most ~{rate(1 / window.bench_cpu_per_request)} "
                               f"requests/s"),
        ]

    def _print_problems(self, window: Window) -> None:
        problems = window.problems()
        if problems:
            print(f"  {len(problems)} wrong replies, for example: {problems[:3]}")


def _files_size(directory: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in directory.glob(pattern))


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.0f}%"


# -- entry -----------------------------------------------------------------------------------------


Mode = TypeVar("Mode")


@dataclass
class SuiteResult:
    summary: list[str]
    ok: bool


async def each_measurement(
    modes: Mapping[str, Mode], only: frozenset[str], measure: Callable[[Mode], Awaitable[tuple[str, bool]]]
) -> SuiteResult:
    """Run ``measure`` for each mode named in ``only`` (all when it is empty): their summary
    lines, and whether all went well."""
    summary: list[str] = []
    ok = True
    for name, mode in modes.items():
        if only and name not in only:
            continue
        line, fine = await measure(mode)
        summary.append(line)
        ok = ok and fine
    return SuiteResult(summary=summary, ok=ok)


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    plan = QUICK if quick else FULL
    wanted = [m for m in MEASUREMENTS if not only or m in only]
    gc.disable()
    try:
        return await _run(plan, wanted)
    finally:
        gc.enable()


async def _run(plan: Plan, wanted: list[str]) -> SuiteResult:
    with tempfile.TemporaryDirectory(prefix="smsline-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(plan, workdir)
        port = await bench.simulator.start(HOST, 0)
        service = ServiceProcess(workdir, port)
        bench.service = service
        summary: list[str] = []
        exit_code: int | None = None
        try:
            print(heading("Requests by SMS: setup"), flush=True)
            import_seconds = await service.prepare(bench.phones.count)
            await service.start()
            await bench.simulator.wait_bound(30.0)
            print(facts([
                ("smsline", f"{SMSLINE} serve, pid {service.pid}, commit {source_revision(ROOT)}"),
                ("database", f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL), "
                             f"{service.database} on {filesystem_of(workdir)}"),
                ("customers", f"{bench.phones.count:,} imported in {import_seconds:.1f} s "
                              f"(one fresh phone per request)"),
                ("SMSC", f"built-in simulator in the bench process on {HOST}:{port} "
                         f"(deliver_sm window {bench.simulator.window}, delivery receipts for every "
                         f"submit_sm); smsline: one transceiver bind, default window"),
                ("limits", f"SMSLINE_LIMIT_* = {GENEROUS_LIMIT} (abuse limits out of the way)"),
            ]), flush=True)
            steps = {"ack-latency": bench.ack_latency, "max-rate": bench.max_rate, "info": bench.info}
            for name in wanted:
                if not service.running:
                    raise RuntimeError("smsline serve stopped during the run")
                summary.append(await steps[name]())
        finally:
            exit_code = await service.stop()
            await bench.simulator.stop()
        print(heading("Requests by SMS: shutdown"))
        db_size = await asyncio.to_thread(_files_size, workdir, "bench.db*")
        print(facts([
            ("SIGTERM", f"smsline serve exited {exit_code}" + (" (ok)" if exit_code == 0 else " (NOT 0)")),
            ("database size", f"{db_size / 1024 / 1024:.0f} MiB"),
            ("stray SMS", f"{bench.observer.strays} (to phones the bench did not use)"),
            ("MO not taken", f"{bench.observer.mo_errors} deliver_sm attempts answered with an error, "
                             f"timed out or lost with the link (the SMSC redelivers them)"),
        ]))
        tail = service.log_tail()
        if tail:
            print("  smsline's log (last lines, level WARNING and above):")
            for line in tail:
                print(f"    {line}")
    return SuiteResult(summary=summary, ok=exit_code == 0)
