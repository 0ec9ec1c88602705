"""`smsline serve` as a person runs it (`make run`): its own process, the built-in simulator,
a demo customer texting it with `smsline mo`, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SMSLINE = str(Path(sys.executable).parent / "smsline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        SMSLINE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode()


async def wait_ready(url: str, process: asyncio.subprocess.Process, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            if process.returncode is not None:
                raise AssertionError("smsline serve exited before it was ready")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} not ready within {timeout}s")
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_serve_with_the_built_in_simulator_answers_a_demo_customer(
    database_url: str, tmp_path: Path
) -> None:
    http_port, smpp_port, sim_http_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SMSLINE_DATABASE_URL": database_url,
        "SMSLINE_HTTP_PORT": str(http_port),
        "SMSLINE_SIMULATOR_PORT": str(smpp_port),
        "SMSLINE_SIMULATOR_HTTP_PORT": str(sim_http_port),
    }
    env.pop("SMSLINE_CONFIG", None)
    code, out = await run("customers", "import", str(ROOT / "demo" / "customers.csv"), env=env)
    assert code == 0, out

    process = await asyncio.create_subprocess_exec(
        SMSLINE, "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await wait_ready(f"http://127.0.0.1:{http_port}/readyz", process)
        code, out = await run("mo", "+79161234567", "CLIENT info", "--wait", "20", env=env)
        assert code == 0, out
        assert "Your request has been received." in out
        assert "Personal Code: 1234. CLIENT'S PORTAL: login: ivanov, password: " in out
        assert "2 replies" in out

        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{http_port}/metrics")).text
        assert "smsline_ack_latency_seconds_count 1.0" in metrics
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    banner = output.decode()
    assert process.returncode == 0, banner
    assert "built-in SMSC simulator" in banner
    assert 'smsline mo +79161234567 "CLIENT info"' in banner
    assert "password: " not in banner.replace('"CLIENT info"', "")


async def test_serve_on_a_database_never_migrated_says_what_to_do(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SMSLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
        "SMSLINE_HTTP_PORT": str(free_port()),
        "SMSLINE_SIMULATOR_PORT": str(free_port()),
        "SMSLINE_SIMULATOR_HTTP_PORT": str(free_port()),
    }
    env.pop("SMSLINE_CONFIG", None)
    code, out = await run("serve", env=env)
    assert code == 2
    assert "never migrated" in out
    assert "smsline db upgrade" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("taken", "what", "setting"),
    [
        ("SMSLINE_HTTP_PORT", "HTTP", "http_port (SMSLINE_HTTP_PORT)"),
        ("SMSLINE_SIMULATOR_PORT", "the SMSC simulator", "simulator_port (SMSLINE_SIMULATOR_PORT)"),
        ("SMSLINE_SIMULATOR_HTTP_PORT", "the simulator's HTTP control",
         "simulator_http_port (SMSLINE_SIMULATOR_HTTP_PORT)"),
    ],
)
async def test_serve_on_a_taken_port_says_which_and_exits(
    database_url: str, taken: str, what: str, setting: str
) -> None:
    """Another program on one of its ports: `smsline serve` says which port, what for and which
    setting moves it, and exits 2 at once (it used to hang, printing uvicorn's traceback)."""
    ports = {name: free_port() for name in
             ("SMSLINE_HTTP_PORT", "SMSLINE_SIMULATOR_PORT", "SMSLINE_SIMULATOR_HTTP_PORT")}
    env = {**os.environ, "SMSLINE_DATABASE_URL": database_url, **{k: str(v) for k, v in ports.items()}}
    env.pop("SMSLINE_CONFIG", None)
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports[taken]))
        other.listen()
        code, out = await run("serve", env=env, timeout=30)
    text = " ".join(out.split())  # the console wraps lines
    assert code == 2, out
    assert f"cannot listen on 127.0.0.1:{ports[taken]} for {what}" in text
    assert f"Choose another port with {setting}" in text
    assert "Traceback" not in out
