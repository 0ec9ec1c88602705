"""Commands the benchmarks run to their end, with their wall time and their own peak memory."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def memory_of(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a running process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process and its children have used, all threads;
    NaN once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return own + sum(cpu_seconds(int(child)) for child in children)


def run_measured(
    argv: Sequence[str], env: dict[str, str], timeout: float, *, stdout: IO[str], stderr: IO[str]
) -> tuple[int, float, int]:
    """Run a command to its end: (exit code, wall seconds, its peak RSS in bytes).

    The peak is the process's VmHWM, read every 5 ms while it runs. The ``ru_maxrss`` that
    wait4 reports would count the bench process's own memory too: on Linux a child inherits its
    parent's high-water mark up to its exec."""
    started = time.monotonic()
    process = subprocess.Popen(list(argv), env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    deadline = started + timeout
    peak = 0
    own_command = [argv[0].encode()]
    while True:
        with contextlib.suppress(OSError, ValueError):  # gone meanwhile
            # Until its exec the child still is (or shares) the bench's own memory.
            if Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[1:2] == own_command:
                peak = max(peak, memory_of(process.pid, "VmHWM"))
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            raise RuntimeError(f"{' '.join(argv[1:3])} did not finish within {timeout:g} s")
        time.sleep(0.005)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.monotonic() - started, peak


async def stop_gracefully(process: asyncio.subprocess.Process, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``: its exit code, or None when
    it had to be killed."""
    if process.returncode is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
