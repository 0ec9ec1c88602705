"""The portal's logins with the temporary passwords `CLIENT info` issues.

``verify`` answers ok / wrong / expired / must_change. It always runs exactly one argon2
verification — against a stand-in hash when the login is unknown or has no password — so its
time does not tell whether a login exists. ``change_password`` sets a new password after a valid
(usually temporary) one; the new one does not expire and need not be changed. Hashing runs on a
thread of its own, never on the event loop. Passwords are only ever held in memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from smsline.db.engine import Database
from smsline.db.schema import customers
from smsline.line.credentials import password_hasher

Outcome = Literal["ok", "wrong", "expired", "must_change"]
MIN_NEW_PASSWORD: Final = 10
MAX_PASSWORD: Final = 128


class WeakPassword(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    customer_id: str | None = None  # given only when the password was right and valid
    customer: int | None = None


def check_new_password(new: str, current: str, login: str) -> None:
    if len(new) < MIN_NEW_PASSWORD:
        raise WeakPassword(f"must be at least {MIN_NEW_PASSWORD} characters")
    if len(new) > MAX_PASSWORD:
        raise WeakPassword(f"must be at most {MAX_PASSWORD} characters")
    if new == current:
        raise WeakPassword("must differ from the current password")
    if new.strip().lower() == login.strip().lower():
        raise WeakPassword("must differ from the login")
    if len(set(new)) < 4:
        raise WeakPassword("must have at least 4 different characters")


class PortalPasswords:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hasher = password_hasher()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-argon2")
        self._stand_in: str | None = None

    def _matches(self, digest: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(digest, password))
        except (VerificationError, InvalidHashError):
            return False

    def _stand_in_hash(self) -> str:
        if self._stand_in is None:
            self._stand_in = self.hasher.hash(secrets.token_urlsafe(16))
        return self._stand_in

    def _verify_among(self, candidates: list[tuple[int, str, str | None]], password: str) -> int | None:
        """Runs on the hashing thread: the first candidate whose hash matches (one verification
        at least, so an unknown login costs the same)."""
        found: int | None = None
        hashed = [(cid, digest) for cid, _, digest in candidates if digest]
        if not hashed:
            self._matches(self._stand_in_hash(), password)
            return None
        for cid, digest in hashed:
            if self._matches(digest, password) and found is None:
                found = cid
        return found

    async def verify(self, login: str, password: str) -> Verdict:
        rows = await self._candidates(login)
        loop = asyncio.get_running_loop()
        match = await loop.run_in_executor(
            self._pool, self._verify_among, [(r[0], r[1], r[2]) for r in rows], password
        )
        if match is None:
            return Verdict("wrong")
        row = next(r for r in rows if r[0] == match)
        _, customer_id, _, expires_at, must_change = row
        if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
            return Verdict("expired")
        if must_change:
            return Verdict("must_change", customer_id, match)
        return Verdict("ok", customer_id, match)

    async def change_password(self, login: str, current: str, new: str) -> Verdict:
        """Set ``new`` when ``current`` is right and not expired; the verdict on ``current``.
        Raises WeakPassword (before checking anything else) when ``new`` is not acceptable."""
        check_new_password(new, current, login)
        verdict = await self.verify(login, current)
        if verdict.customer is None:
            return verdict
        loop = asyncio.get_running_loop()
        digest = await loop.run_in_executor(self._pool, self.hasher.hash, new)
        customer = verdict.customer
        now = dt.datetime.now(dt.UTC)

        def store(conn: Connection) -> None:
            conn.execute(
                update(customers)
                .where(customers.c.id == customer)
                .values(
                    password_hash=digest,
                    password_expires_at=None,
                    password_must_change=False,
                    updated_at=now,
                )
            )

        await self.db.run(store)
        return Verdict("ok", verdict.customer_id, customer)

    async def _candidates(self, login: str) -> list[tuple[int, str, str | None, dt.datetime | None, bool]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(
                    customers.c.id,
                    customers.c.customer_id,
                    customers.c.password_hash,
                    customers.c.password_expires_at,
                    customers.c.password_must_change,
                ).where(customers.c.login == login)
            )
            return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
