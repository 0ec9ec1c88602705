"""The service's secret key, from which the callback signing secret of every API token is derived.

It comes from ``SMSLINE_SECRET_KEY`` (or the file named by ``SMSLINE_SECRET_KEY_FILE``). With
neither set and a SQLite database, a random key is made once and kept in ``smsline.key`` beside
the database file (readable by its owner only), so a single-machine install works out of the box.
On PostgreSQL, where several processes share the database, the key must be configured.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from smsline.config import Settings

KEY_FILE_NAME = "smsline.key"


class MissingServiceKey(RuntimeError):
    """No secret key is configured and none can be kept beside the database."""


def key_file(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).parent / KEY_FILE_NAME


def service_key(settings: Settings) -> bytes:
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured.encode()
    path = key_file(settings)
    if path is None:
        raise MissingServiceKey(
            "no secret key: set SMSLINE_SECRET_KEY or SMSLINE_SECRET_KEY_FILE "
            "(the same value for every smsline process sharing the database)"
        )
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32).encode()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(fresh)
    return fresh
