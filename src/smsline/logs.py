"""Logging: plain text or JSON lines, with secrets redacted on the way out.

Code never logs message bodies; as a second line of defence every record passes a filter that
masks anything shaped like a password in the SMS texts smsline sends, any registered secret
value (the SMSC passwords), and the values PostgreSQL quotes in its errors' DETAIL lines (a
duplicate phone, a failing row): customers' data, which statement parameters are already kept
out of.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

_PASSWORD = re.compile(r"((?:password|пароль)\s*[:=]\s*)([^\s,.;]+)", re.IGNORECASE)
MASK = "********"
# PostgreSQL's DETAIL lines that quote a row's values: "Key (phone)=(+7916…) already exists.",
# "Key (customer)=(42) is not present in table …", "Failing row contains (…)."
_KEY_VALUES = re.compile(
    r"(Key \([^\n]*?\)=\()[^\n]*(\) (?:already exists|is not present in table|is still referenced"
    r"|conflicts with existing key))"
)
_FAILING_ROW = re.compile(r"(Failing row contains \()[^\n]*(\)\.)")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = {s for s in secrets if s}

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)

    def redact(self, text: str) -> str:
        text = _PASSWORD.sub(lambda m: m.group(1) + MASK, text)
        if "DETAIL:" in text:
            text = _KEY_VALUES.sub(lambda m: m.group(1) + MASK + m.group(2), text)
            text = _FAILING_ROW.sub(lambda m: m.group(1) + MASK + m.group(2), text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


redaction = RedactSecrets()


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    for secret in secrets:
        redaction.add(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redaction)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
