"""Client of the simulator's HTTP endpoint: for `smsline mo`, send an SMS as a customer and show
the replies that come back to the customer's phone; for tests and operators, set its faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from smsline.smpp.simulator_http import MAX_WAIT


class SimulatorError(RuntimeError):
    """The simulator refused the request."""


def _e164(number: str) -> str:
    number = number.strip()
    bare = number.removeprefix("+")
    return f"+{bare}" if bare.isdigit() else number


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(str(part) for part in item.get('loc', [])[1:])}: {item.get('msg')}"
                for item in detail
                if isinstance(item, dict)
            )
        raise SimulatorError(f"the simulator answered {response.status_code}: {detail}")
    return response.json()


def _clock(at: str) -> str:
    try:
        return datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return at


def inject_mo(
    base_url: str,
    phone: str,
    text: str,
    to: str,
    *,
    wait: float = 15.0,
    replies_expected: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> str:
    """Send ``text`` from ``phone`` to ``to`` through the simulator and collect the replies.

    Replies to ``phone`` that arrive within ``wait`` seconds (or until ``replies_expected`` of
    them came) are passed to ``echo`` as they come. Returns a one-line summary.
    """
    sender = _e164(phone)
    receiver = _e164(to)
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=10.0) as client:
        after = int(_check(client.get("/healthz")).get("last_message_id", 0))
        posted = time.monotonic()
        _check(client.post("/mo", json={"from": sender, "text": text, "to": receiver}))
        summary = f"sent {text!r} from {sender} to {receiver}"
        if wait <= 0:
            return summary
        deadline = posted + wait
        replies = 0
        while (remaining := deadline - time.monotonic()) > 0 and (
            replies_expected is None or replies < replies_expected
        ):
            poll = min(remaining, MAX_WAIT)
            found = _check(
                client.get(
                    "/messages",
                    params={"to": sender, "after": after, "wait": round(poll, 3)},
                    timeout=poll + 10.0,
                )
            )
            for message in found:
                after = max(after, int(message["id"]))
                replies += 1
                if echo is not None:
                    echo(f"← {_clock(message['at'])} {message['from']}: {message['text']}")
    noun = "reply" if replies == 1 else "replies"
    return f"{summary}; {replies} {noun}"


def set_faults(base_url: str, **changes: Any) -> dict[str, Any]:
    """Change the simulator's faults (fields of ``Faults``); returns all of them as they now are."""
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=10.0) as client:
        result: dict[str, Any] = _check(client.patch("/faults", json=changes))
    return result


def clear_faults(base_url: str) -> dict[str, Any]:
    """Make the simulator behave well again."""
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=10.0) as client:
        result: dict[str, Any] = _check(client.delete("/faults"))
    return result


def drop_links(base_url: str) -> int:
    """Abort every ESME connection of the simulator now; returns how many there were."""
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=10.0) as client:
        return int(_check(client.post("/drop-links"))["dropped"])
