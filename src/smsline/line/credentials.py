"""Temporary portal passwords for `CLIENT info`.

The password is made at the moment its SMS is submitted: a fresh random one replaces the
previous one, only its argon2 hash is stored (with an expiry and a must-change flag), and the
clear text lives only in memory, on its way into the submit_sm. Hashing is deliberately slow, so
it runs on its own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import string
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from smsline.db.engine import Database
from smsline.db.schema import customers
from smsline.domain.texts import info_text, language_of
from smsline.line.outbox import OutboxItem

PASSWORD_ALPHABET = string.ascii_lowercase + string.digits
PASSWORD_LENGTH = 8


def new_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def password_hasher() -> PasswordHasher:
    """argon2id at the OWASP-recommended cost for interactive logins (19 MiB, t=2, p=1)."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class CredentialIssuer:
    def __init__(self, db: Database, *, ttl_hours: float, threads: int = 1) -> None:
        self.db = db
        self.ttl = dt.timedelta(hours=ttl_hours)
        self.hasher = password_hasher()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    async def issue(self, item: OutboxItem) -> str:
        """Replace the customer's password with a new one and return the SMS text carrying it."""
        if item.customer is None:
            raise ValueError(f"credential message {item.id} has no customer")
        password = new_password()
        loop = asyncio.get_running_loop()
        digest = await loop.run_in_executor(self._pool, self.hasher.hash, password)
        now = dt.datetime.now(dt.UTC)
        customer = item.customer

        def replace_password(conn: Connection) -> Row[tuple[str, str]]:
            conn.execute(
                update(customers)
                .where(customers.c.id == customer)
                .values(
                    password_hash=digest,
                    password_expires_at=now + self.ttl,
                    password_must_change=True,
                    updated_at=now,
                )
            )
            return conn.execute(
                select(customers.c.personal_code, customers.c.login).where(customers.c.id == customer)
            ).one()

        row = await self.db.run(replace_password)
        return info_text(
            language_of(item.language),
            personal_code=row.personal_code,
            login=row.login,
            password=password,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
