"""Customer import (SPEC §6): `smsline customers import FILE.csv` and import_customers()."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import random
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from smsline.cli import app
from smsline.customers import (
    BATCH_SIZE,
    ImportReport,
    InvalidCustomer,
    InvalidCustomerFile,
    RowError,
    apply_customer,
    import_customers,
)
from smsline.db.schema import consent_events, customer_tags, customers

DEMO_FILE = Path(__file__).resolve().parents[1] / "demo" / "customers.csv"
HEADER = "customer_id,phone,personal_code,login,name,language,timezone,tags,sms_enabled\n"


def write(tmp_path: Path, text: str, name: str = "customers.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


async def run_cli(database_url: str, *args: str) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(
            app,
            list(args),
            env={"SMSLINE_DATABASE_URL": database_url, "SMSLINE_CONFIG": None, "COLUMNS": "200"},
        )

    return await asyncio.to_thread(invoke)


async def stored_customers(engine: AsyncEngine) -> dict[str, RowMapping]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(customers))).mappings().all()
    return {row["customer_id"]: row for row in rows}


async def stored_tags(engine: AsyncEngine) -> dict[str, set[str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(customers.c.customer_id, customer_tags.c.tag).join_from(
                customer_tags, customers, customer_tags.c.customer == customers.c.id
            )
        )
        tags: dict[str, set[str]] = {}
        for customer_id, tag in rows:
            tags.setdefault(customer_id, set()).add(tag)
    return tags


async def stored_consent(engine: AsyncEngine) -> list[tuple[str, bool, str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                customers.c.customer_id,
                consent_events.c.sms_enabled,
                consent_events.c.channel,
                consent_events.c.actor,
            )
            .join_from(consent_events, customers, consent_events.c.customer == customers.c.id)
            .order_by(consent_events.c.id)
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]


def reasons(report: ImportReport) -> dict[int, str]:
    return {error.line: error.reason for error in report.rejected}


# --- the demo file and the CLI ----------------------------------------------------------------


async def test_cli_imports_the_demo_customers(database_url: str, engine: AsyncEngine) -> None:
    result = await run_cli(database_url, "customers", "import", str(DEMO_FILE))

    assert result.exit_code == 0, result.output
    assert "created" in result.output
    assert "│       4 │       0 │         0 │        0 │" in result.output
    found = await stored_customers(engine)
    assert set(found) == {"demo-1", "demo-2", "demo-3", "demo-4"}
    ivanov = found["demo-1"]
    assert (ivanov["phone"], ivanov["personal_code"], ivanov["login"], ivanov["language"]) == (
        "+79161234567",
        "1234",
        "ivanov",
        "en",
    )
    assert found["demo-2"]["phone"] == "+79161234568"
    assert found["demo-2"]["language"] == "ru"
    assert found["demo-3"]["sms_enabled"] is False
    assert all(found[c]["sms_enabled"] for c in ("demo-1", "demo-2", "demo-4"))
    assert found["demo-4"]["phone"] == "+79141234567"
    assert found["demo-4"]["timezone"] == "Asia/Vladivostok"
    assert all(row["name"] for row in found.values())
    assert all(row["password_hash"] is None for row in found.values())
    assert await stored_tags(engine) == {"demo-2": {"vip", "moscow"}}
    assert await stored_consent(engine) == [("demo-3", False, "import", "import:customers.csv")]


async def test_cli_if_empty_skips_when_customers_exist(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    first = await run_cli(database_url, "customers", "import", str(DEMO_FILE), "--if-empty")
    assert first.exit_code == 0, first.output
    other = write(tmp_path, HEADER + "c-9,+79161239999,9,someone,,,,,\n")

    second = await run_cli(database_url, "customers", "import", str(other), "--if-empty")

    assert second.exit_code == 0, second.output
    assert "Skipped" in second.output
    assert set(await stored_customers(engine)) == {"demo-1", "demo-2", "demo-3", "demo-4"}


async def test_cli_lists_bad_rows_with_lines_and_reasons_and_imports_the_good_ones(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "c-1,+79161230001,11,one,Anna,en,Europe/Moscow,,yes\n"
        + "c-2,12345,12,two,,,,,\n"
        + "c-3,+79161230003,13,three,,de,,,\n"
        + "c-4,+79161230004,14,four,,,Mars/Olympus,,\n"
        + "c-5,+79161230005,15,five,,,,,maybe\n"
        + "c-6,+79161230006,16,,,,,,\n"
        + "c-7,+79161230007,17,seven\n"
        + "c-8,8 (916) 123-00-08,18,eight,,ru,asia/vladivostok,,no\n",
    )

    result = await run_cli(database_url, "customers", "import", str(path))

    assert result.exit_code == 1, result.output
    assert "│       2 │       0 │         0 │        6 │" in result.output
    for line, reason in [
        (3, "not a valid phone number"),
        (4, "language 'de' is not one of en, ru"),
        (5, "timezone 'Mars/Olympus'"),
        (6, "sms_enabled 'maybe'"),
        (7, "login is empty"),
        (8, "has 4 fields, the header has 9"),
    ]:
        assert any(
            text.lstrip("│ ").startswith(f"{line} │") and reason in text
            for text in result.output.splitlines()
        ), (line, reason, result.output)
    found = await stored_customers(engine)
    assert set(found) == {"c-1", "c-8"}
    assert found["c-8"]["phone"] == "+79161230008"
    assert found["c-8"]["timezone"] == "Asia/Vladivostok"
    assert found["c-8"]["language"] == "ru"
    assert found["c-8"]["sms_enabled"] is False


async def test_cli_all_or_nothing_imports_nothing_when_one_row_is_bad(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await import_customers(engine, write(tmp_path, HEADER + "c-1,+79161230001,1,one,Old,,,,\n"))
    path = write(
        tmp_path,
        HEADER
        + "c-1,+79161230001,1,one,New name,,,,no\n"
        + "c-2,+79161230002,2,two,,,,vip,\n"
        + "c-3,+79161230003,3,three,,xx,,,\n",
        name="update.csv",
    )

    result = await run_cli(database_url, "customers", "import", str(path), "--all-or-nothing")

    assert result.exit_code == 1, result.output
    assert "Nothing was imported" in result.output
    assert "language 'xx'" in result.output
    found = await stored_customers(engine)
    assert set(found) == {"c-1"}
    assert found["c-1"]["name"] == "Old"
    assert found["c-1"]["sms_enabled"] is True
    assert await stored_tags(engine) == {}
    assert await stored_consent(engine) == []


async def test_cli_rejects_a_file_with_a_bad_header(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write(tmp_path, "customer_id,phone,login,email\nc-1,+79161230001,one,a@b.c\n")

    result = await run_cli(database_url, "customers", "import", str(path))

    assert result.exit_code == 1
    assert "unknown column(s) 'email'" in result.output
    assert "missing required column(s) personal_code" in result.output
    assert await stored_customers(engine) == {}


async def test_cli_says_to_upgrade_an_unmigrated_database(empty_database_url: str) -> None:
    result = await run_cli(empty_database_url, "customers", "import", str(DEMO_FILE))

    assert result.exit_code == 1
    assert "Database error" in result.output
    assert "smsline db upgrade" in result.output


# --- import_customers ---------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["8 908 622 87 79", "+7 (908) 622-87-79", "79086228779"])
async def test_phone_formats_are_normalised_to_e164(
    engine: AsyncEngine, tmp_path: Path, written: str
) -> None:
    report = await import_customers(
        engine, write(tmp_path, f'customer_id,phone,personal_code,login\nc-1,"{written}",1,a\n')
    )

    assert report == ImportReport(created=1, updated=0, unchanged=0, rejected=[], imported=True)
    assert (await stored_customers(engine))["c-1"]["phone"] == "+79086228779"


async def test_defaults_apply_to_new_customers(engine: AsyncEngine, tmp_path: Path) -> None:
    path = write(tmp_path, "login,customer_id,personal_code,phone\nann,c-1,77,9161230001\n")

    report = await import_customers(
        engine, path, default_language="ru", default_timezone="Asia/Yekaterinburg"
    )

    assert report.created == 1
    row = (await stored_customers(engine))["c-1"]
    assert (row["language"], row["timezone"], row["sms_enabled"], row["name"]) == (
        "ru",
        "Asia/Yekaterinburg",
        True,
        None,
    )
    assert row["created_at"].tzinfo is not None


async def test_reimport_updates_changed_rows_and_counts_the_rest_unchanged(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    original = (
        HEADER
        + "c-1,+79161230001,11,one,Anna,en,,,\n"
        + "c-2,+79161230002,12,two,Boris,en,,a,\n"
        + "c-3,+79161230003,13,three,Vera,en,,,\n"
        + "c-4,+79161230004,14,four,Gleb,en,,b;c,\n"
    )
    first = await import_customers(engine, write(tmp_path, original))
    before = await stored_customers(engine)
    changed = (
        HEADER
        + "c-1,+79161230001,11,one,Anna,en,,,\n"
        + "c-2,+79161230002,12,two,Boris,en,,c b,\n"
        + "c-3,+79161239993,99,three,Vera,ru,Asia/Omsk,,\n"
        + "c-4,+79161230004,14,four,Gleb,en,,b;c,\n"
        + "c-5,+79161230005,15,five,Dina,en,,,\n"
    )

    second = await import_customers(engine, write(tmp_path, changed, name="again.csv"))

    assert (first.created, first.updated, first.unchanged) == (4, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (1, 2, 2)
    assert second.rejected == []
    after = await stored_customers(engine)
    assert (after["c-3"]["phone"], after["c-3"]["personal_code"]) == ("+79161239993", "99")
    assert (after["c-3"]["language"], after["c-3"]["timezone"]) == ("ru", "Asia/Omsk")
    assert after["c-3"]["updated_at"] > before["c-3"]["updated_at"]
    assert after["c-3"]["created_at"] == before["c-3"]["created_at"]
    assert after["c-3"]["id"] == before["c-3"]["id"]
    assert after["c-1"]["updated_at"] == before["c-1"]["updated_at"]
    assert await stored_tags(engine) == {"c-2": {"b", "c"}, "c-4": {"b", "c"}}


async def test_empty_cells_keep_what_a_known_customer_has(engine: AsyncEngine, tmp_path: Path) -> None:
    await import_customers(
        engine, write(tmp_path, HEADER + "c-1,+79161230001,1,one,Anna,ru,Asia/Omsk,vip,no\n")
    )

    report = await import_customers(
        engine, write(tmp_path, HEADER + "c-1,+79161230001,1,one,,,,vip,\n", name="blank.csv")
    )

    assert (report.updated, report.unchanged) == (0, 1)
    row = (await stored_customers(engine))["c-1"]
    assert (row["name"], row["language"], row["timezone"], row["sms_enabled"]) == (
        "Anna",
        "ru",
        "Asia/Omsk",
        False,
    )


async def test_tags_are_stored_replaced_and_cleared(engine: AsyncEngine, tmp_path: Path) -> None:
    await import_customers(
        engine,
        write(
            tmp_path,
            HEADER
            + 'c-1,+79161230001,1,one,,,,"vip; moscow,  gold vip",\n'
            + "c-2,+79161230002,2,two,,,,regular,\n",
        ),
    )
    assert await stored_tags(engine) == {"c-1": {"vip", "moscow", "gold"}, "c-2": {"regular"}}

    no_tags_column = write(
        tmp_path,
        "customer_id,phone,personal_code,login\nc-1,+79161230001,1,one\nc-2,+79161230002,2,two\n",
        name="no-tags.csv",
    )
    untouched = await import_customers(engine, no_tags_column)
    assert untouched.unchanged == 2
    assert await stored_tags(engine) == {"c-1": {"vip", "moscow", "gold"}, "c-2": {"regular"}}

    replaced = await import_customers(
        engine,
        write(
            tmp_path,
            HEADER + "c-1,+79161230001,1,one,,,,gold,\nc-2,+79161230002,2,two,,,,,\n",
            name="replace.csv",
        ),
    )
    assert replaced.updated == 2
    assert await stored_tags(engine) == {"c-1": {"gold"}}


async def test_duplicates_inside_the_file_reject_the_later_row(engine: AsyncEngine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "c-1,+79161230001,1,one,First,,,,\n"
        + "c-2,+79161230002,2,two,,,,,\n"
        + "c-1,+79161230003,3,three,Second,,,,\n"
        + "c-4,8 916 123-00-02,4,four,,,,,\n",
    )

    report = await import_customers(engine, path)

    assert report.created == 2
    assert report.rejected == [
        RowError(4, "customer_id 'c-1' is also on line 2"),
        RowError(5, "phone +79161230002 is also on line 3"),
    ]
    found = await stored_customers(engine)
    assert set(found) == {"c-1", "c-2"}
    assert found["c-1"]["name"] == "First"


async def test_phone_of_another_customer_is_rejected(engine: AsyncEngine, tmp_path: Path) -> None:
    await import_customers(engine, write(tmp_path, HEADER + "c-1,+79161230001,1,one,,,,,\n"))
    path = write(
        tmp_path,
        HEADER + "c-2,+79161230001,2,two,,,,vip,no\nc-3,+79161230003,3,three,,,,,\n",
        name="second.csv",
    )

    report = await import_customers(engine, path)

    assert report.created == 1
    assert report.rejected == [RowError(2, "phone +79161230001 already belongs to customer 'c-1'")]
    found = await stored_customers(engine)
    assert set(found) == {"c-1", "c-3"}
    assert found["c-1"]["phone"] == "+79161230001"
    assert await stored_tags(engine) == {}
    assert await stored_consent(engine) == []


async def test_consent_events_record_every_change_of_sms_enabled(engine: AsyncEngine, tmp_path: Path) -> None:
    async def load(text: str, name: str) -> ImportReport:
        return await import_customers(
            engine, write(tmp_path, HEADER + text, name=name), actor=f"import:{name}"
        )

    await load("c-1,+79161230001,1,one,,,,,true\nc-2,+79161230002,2,two,,,,,0\n", "a.csv")
    await load("c-1,+79161230001,1,one,,,,,false\nc-2,+79161230002,2,two,,,,,no\n", "b.csv")
    await load("c-1,+79161230001,1,one,,,,,\nc-2,+79161230002,2,two,,,,,\n", "c.csv")
    await load("c-1,+79161230001,1,one,,,,,YES\nc-2,+79161230002,2,two,,,,,\n", "d.csv")

    assert await stored_consent(engine) == [
        ("c-2", False, "import", "import:a.csv"),
        ("c-1", False, "import", "import:b.csv"),
        ("c-1", True, "import", "import:d.csv"),
    ]
    found = await stored_customers(engine)
    assert found["c-1"]["sms_enabled"] is True
    assert found["c-2"]["sms_enabled"] is False


async def test_import_never_touches_portal_passwords(engine: AsyncEngine, tmp_path: Path) -> None:
    await import_customers(engine, write(tmp_path, HEADER + "c-1,+79161230001,1,one,,,,,\n"))
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    async with engine.begin() as connection:
        await connection.execute(
            update(customers).values(
                password_hash="$argon2id$stored",
                password_expires_at=expires,
                password_must_change=True,
            )
        )

    report = await import_customers(
        engine, write(tmp_path, HEADER + "c-1,+79161230001,2,uno,,,,,\n", name="b.csv")
    )

    assert report.updated == 1
    row = (await stored_customers(engine))["c-1"]
    assert (row["login"], row["personal_code"]) == ("uno", "2")
    assert (row["password_hash"], row["password_expires_at"], row["password_must_change"]) == (
        "$argon2id$stored",
        expires,
        True,
    )


async def test_line_numbers_are_physical_lines_with_bom_blank_lines_and_multiline_names(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "\n"
        + 'c-1,+79161230001,1,one,"Anna\nKarenina",,,,\n'
        + "c-2,+79161230002,2,two,,EN,,,\r\n"
        + "\n"
        + "c-3,+79161230003,3,three,,fr,,,\n",
        bom=True,
    )

    report = await import_customers(engine, path)

    assert reasons(report) == {7: "language 'fr' is not one of en, ru"}
    found = await stored_customers(engine)
    assert found["c-1"]["name"] == "Anna\nKarenina"
    assert found["c-2"]["language"] == "en"


async def test_a_row_with_several_problems_lists_them_all(engine: AsyncEngine, tmp_path: Path) -> None:
    long_id = "x" * 65
    path = write(tmp_path, HEADER + f"{long_id},,1,,,ru-RU,,,\n")

    report = await import_customers(engine, path)

    reason = reasons(report)[2]
    for part in (
        "customer_id is longer than 64 characters",
        "phone is empty",
        "login is empty",
        "language 'ru-RU'",
    ):
        assert part in reason
    assert await stored_customers(engine) == {}


async def test_files_that_cannot_be_imported_at_all(engine: AsyncEngine, tmp_path: Path) -> None:
    cases: list[tuple[bytes, str]] = [
        (b"", "is empty"),
        (b"customer_id,phone,personal_code\nc-1,+79161230001,1\n", "missing required"),
        (b"customer_id,phone,personal_code,login,login\n", "repeated column(s) 'login'"),
        (HEADER.encode() + "c-1,+79161230001,1,one,Анна,,,,\n".encode("cp1251"), "not UTF-8"),
    ]
    for content, message in cases:
        path = tmp_path / "broken.csv"
        path.write_bytes(content)
        with pytest.raises(InvalidCustomerFile, match=re.escape(message)):
            await import_customers(engine, path)
    assert await stored_customers(engine) == {}


async def test_large_file_is_imported_in_batches_with_progress(engine: AsyncEngine, tmp_path: Path) -> None:
    rows = BATCH_SIZE * 2 + 500
    lines = [
        f"c-{n},+7916{n:07d},{n},login{n},,,,t{n % 3},{'no' if n % 100 == 0 else ''}\n" for n in range(rows)
    ]
    lines[BATCH_SIZE + 10] = "c-1,+79169999999,1,dup,,,,,\n"
    lines[BATCH_SIZE * 2 + 1] = "c-bad,+7916,1,bad,,,,,\n"
    seen: list[int] = []

    report = await import_customers(engine, write(tmp_path, HEADER + "".join(lines)), progress=seen.append)

    assert report.created == rows - 2
    assert set(reasons(report)) == {BATCH_SIZE + 12, BATCH_SIZE * 2 + 3}
    assert reasons(report)[BATCH_SIZE + 12] == "customer_id 'c-1' is also on line 3"
    assert "not a valid phone number" in reasons(report)[BATCH_SIZE * 2 + 3]
    assert seen == sorted(seen)
    assert seen[-1] == rows
    found = await stored_customers(engine)
    assert len(found) == rows - 2
    assert found["c-1"]["login"] == "login1"
    opted_out = sum(1 for line in lines if line.endswith(",no\n"))
    assert opted_out > 20
    assert len(await stored_consent(engine)) == opted_out


async def test_all_or_nothing_commits_everything_when_every_row_is_good(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with engine.begin() as connection:
        now = dt.datetime.now(dt.UTC)
        values: dict[str, Any] = {
            "customer_id": "c-1",
            "phone": "+79161230001",
            "personal_code": "1",
            "login": "one",
            "created_at": now,
            "updated_at": now,
        }
        await connection.execute(insert(customers).values(**values))
    path = write(tmp_path, HEADER + "c-1,+79161230001,1,one,,,,,no\nc-2,+79161230002,2,two,,,,,\n")

    report = await import_customers(engine, path, all_or_nothing=True, actor="import:x.csv")

    assert report == ImportReport(created=1, updated=1, unchanged=0, rejected=[], imported=True)
    assert set(await stored_customers(engine)) == {"c-1", "c-2"}
    assert await stored_consent(engine) == [("c-1", False, "import", "import:x.csv")]


# --- batches: what spans them behaves as within one ------------------------------------------------


async def test_every_kind_of_row_is_handled_the_same_on_either_side_of_a_batch_boundary(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await import_customers(
        engine,
        write(
            tmp_path,
            HEADER
            + "c-1,+79161230001,1,one,Anna,en,,vip,\n"
            + "c-2,+79161230002,2,two,Boris,en,,,\n"
            + "c-3,+79161230003,3,three,Vera,ru,,gold,no\n"
            + "c-8,+79161230008,8,eight,,,,,\n",
            name="before.csv",
        ),
        actor="import:before.csv",
    )
    path = write(
        tmp_path,
        HEADER
        + "c-1,+79161230001,1,one,Anna,,,vip,\n"  # 2: unchanged
        + "c-4,8 916 123-00-04,4,four,,,,new;tags,0\n"  # 3: created, opted out, tagged
        + "c-2,+79161230002,2,two,Boris B,,Asia/Vladivostok,,\n"  # 4: updated (name, time zone)
        + "c-3,+79161230003,3,three,Vera,ru,,,yes\n"  # 5: updated: opted in, tags cleared
        + "c-5,+79161230008,5,five,,,,,\n"  # 6: phone of c-8 in the database
        + "c-4,+79161239999,4,again,,,,,\n"  # 7: customer_id of line 3
        + "c-6,+7 (916) 123-00-04,6,six,,,,,\n"  # 8: phone of line 3, written otherwise
        + "c-5,+79161230055,5,five,,,,,\n"  # 9: customer_id of line 6 (rejected for its phone)
        + "c-7,+79161230007,7,seven,,ru,Europe/Kaliningrad,,\n",  # 10: created
        name="after.csv",
    )
    seen: list[int] = []

    report = await import_customers(
        engine, path, actor="import:after.csv", batch_size=2, progress=seen.append
    )

    assert (report.created, report.updated, report.unchanged) == (2, 2, 1)
    assert report.rejected == [
        RowError(6, "phone +79161230008 already belongs to customer 'c-8'"),
        RowError(7, "customer_id 'c-4' is also on line 3"),
        RowError(8, "phone +79161230004 is also on line 3"),
        RowError(9, "customer_id 'c-5' is also on line 6"),
    ]
    assert seen == [2, 4, 6, 8, 9]
    found = await stored_customers(engine)
    assert set(found) == {"c-1", "c-2", "c-3", "c-4", "c-7", "c-8"}
    assert (found["c-2"]["name"], found["c-2"]["timezone"], found["c-2"]["language"]) == (
        "Boris B",
        "Asia/Vladivostok",
        "en",
    )
    assert (found["c-4"]["phone"], found["c-4"]["login"], found["c-4"]["sms_enabled"]) == (
        "+79161230004",
        "four",
        False,
    )
    assert (found["c-7"]["language"], found["c-7"]["timezone"]) == ("ru", "Europe/Kaliningrad")
    assert found["c-3"]["sms_enabled"] is True
    assert await stored_tags(engine) == {"c-1": {"vip"}, "c-4": {"new", "tags"}}
    assert await stored_consent(engine) == [
        ("c-3", False, "import", "import:before.csv"),
        ("c-4", False, "import", "import:after.csv"),
        ("c-3", True, "import", "import:after.csv"),
    ]


async def test_all_or_nothing_over_several_batches(engine: AsyncEngine, tmp_path: Path) -> None:
    rows = [
        f"c-{n},+7916{n:07d},{n},login{n},,,,t{n % 2},{'no' if n % 3 == 0 else ''}\n" for n in range(1, 8)
    ]
    bad = write(tmp_path, HEADER + "".join(rows) + "c-8,+7916,8,eight,,,,,\n", name="bad.csv")

    refused = await import_customers(engine, bad, all_or_nothing=True, batch_size=2)

    assert refused.imported is False
    assert (refused.created, refused.updated, refused.unchanged) == (0, 0, 0)
    assert [error.line for error in refused.rejected] == [9]
    assert await stored_customers(engine) == {}
    assert await stored_tags(engine) == {}
    assert await stored_consent(engine) == []

    good = write(tmp_path, HEADER + "".join(rows), name="good.csv")
    report = await import_customers(engine, good, all_or_nothing=True, batch_size=2)

    assert report == ImportReport(created=7, updated=0, unchanged=0, rejected=[], imported=True)
    found = await stored_customers(engine)
    assert sorted(found) == [f"c-{n}" for n in range(1, 8)]
    assert found["c-7"]["phone"] == "+79160000007"
    assert await stored_tags(engine) == {f"c-{n}": {f"t{n % 2}"} for n in range(1, 8)}
    assert sorted(customer for customer, *_ in await stored_consent(engine)) == ["c-3", "c-6"]


async def test_each_import_starts_afresh_even_after_one_that_failed_midway(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = "".join(f"c-{n},+7916{n:07d},{n},login{n},,,,,\n" for n in range(1, 6))
    too_long = "z" * 200_000  # more than the csv module takes in one field
    broken = write(tmp_path, HEADER + rows + f'c-9,+79160000009,9,x,"{too_long}",,,,\n', name="broken.csv")
    with pytest.raises(InvalidCustomerFile, match="line 7"):
        await import_customers(engine, broken, batch_size=2)
    assert len(await stored_customers(engine)) == 4  # the batches before the broken one

    again = await import_customers(engine, write(tmp_path, HEADER + rows), batch_size=2)
    once_more = await import_customers(engine, write(tmp_path, HEADER + rows), batch_size=3)

    assert again == ImportReport(created=1, updated=0, unchanged=4, rejected=[], imported=True)
    assert once_more == ImportReport(created=0, updated=0, unchanged=5, rejected=[], imported=True)


async def test_a_row_with_a_nul_character_is_rejected(engine: AsyncEngine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "c-1,+79161230001,1,one,Anna\x00Karenina,,,,\n" + "c-2,+79161230002,2,two,Boris,,,,\n",
    )

    report = await import_customers(engine, path)

    assert report.created == 1
    assert reasons(report) == {2: "contains a NUL character"}
    assert set(await stored_customers(engine)) == {"c-2"}


# --- the batch writers store what the one-customer path stores -------------------------------------

COLUMNS = HEADER.strip().split(",")


def _random_customers(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A first file of 40 customers and a second one that changes, keeps, adds and clashes."""
    zones = ["", "Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "asia/omsk"]

    def customer(n: int, phone: str) -> dict[str, str]:
        return {
            "customer_id": f"c-{n}",
            "phone": phone,
            "personal_code": str(rng.randrange(10_000)),
            "login": f"login{n}",
            "name": rng.choice(["", "Anna", "Борис", "Vera K"]),
            "language": rng.choice(["", "en", "ru", "RU"]),
            "timezone": rng.choice(zones),
            "tags": rng.choice(["", "vip", "vip;gold", "gold moscow"]),
            "sms_enabled": rng.choice(["", "", "yes", "no", "0", "1"]),
        }

    first = [customer(n, f"+7916{n:07d}") for n in range(40)]
    second: list[dict[str, str]] = []
    in_second = sorted(rng.sample(range(60), 45))
    phones = {n: f"+7916{n:07d}" for n in range(40)}
    used: set[str] = set()
    for n in in_second:
        if n < 40 and rng.random() < 0.3:
            row = dict(first[n])  # the same again: unchanged, or blank cells that keep values
            for name in ("name", "language", "timezone", "sms_enabled"):
                if rng.random() < 0.3:
                    row[name] = ""
        else:
            phone = phones.get(n, f"+7926{n:07d}")
            roll = rng.random()
            if roll < 0.15:
                phone = f"8 (936) {n:03d}-00-{n % 100:02d}"  # a new phone, written otherwise
            elif roll < 0.3:
                phone = phones[rng.randrange(40)]  # perhaps another customer's phone
            row = customer(n, phone)
        if row["phone"] in used:
            continue
        used.add(row["phone"])
        second.append(row)
    rng.shuffle(second)
    return first, second


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


_B_PHONES = {"+7916": "+7917", "+7926": "+7927", "8 (936)": "8 (937)", "+7936": "+7937"}


def _as_b(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same customers under other ids and phones, for the one-at-a-time path."""
    b_rows = []
    for row in rows:
        phone = row["phone"]
        for a, b in _B_PHONES.items():
            if phone.startswith(a):
                phone = b + phone[len(a) :]
        b_rows.append({**row, "customer_id": "b" + row["customer_id"][1:], "phone": phone})
    return b_rows


def _as_c(text: str) -> str:
    """Text about the one-at-a-time customers as it is about the others."""
    for a, b in _B_PHONES.items():
        text = text.replace(b, a)
    return text.replace("'b-", "'c-")


async def _one_at_a_time(engine: AsyncEngine, rows: list[dict[str, str]], actor: str) -> ImportReport:
    report = ImportReport()
    for line, values in enumerate(rows, start=2):

        def store(connection: Any, values: dict[str, str] = values) -> str:
            return apply_customer(
                connection,
                values,
                default_region="RU",
                default_language="en",
                default_timezone="Europe/Moscow",
                actor=actor,
                channel="import",
            )

        try:
            async with engine.begin() as connection:
                outcome = await connection.run_sync(store)
        except InvalidCustomer as exc:
            report.rejected.append(RowError(line, str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


async def _stored_by_prefix(engine: AsyncEngine, prefix: str) -> tuple[Any, ...]:
    def own(customer_id: str) -> bool:
        return customer_id.startswith(prefix)

    def same(text: str) -> str:
        return _as_c(text).replace("b-", "c-")

    fields = ("phone", "personal_code", "login", "name", "language", "timezone", "sms_enabled")
    found = {
        same(customer_id): tuple(same(row[name]) if name == "phone" else row[name] for name in fields)
        for customer_id, row in (await stored_customers(engine)).items()
        if own(customer_id)
    }
    tags = {same(customer): tags for customer, tags in (await stored_tags(engine)).items() if own(customer)}
    consent = [(same(c), on, channel) for c, on, channel, _ in await stored_consent(engine) if own(c)]
    return found, tags, consent


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_store_what_one_customer_at_a_time_stores(
    engine: AsyncEngine, tmp_path: Path, seed: int
) -> None:
    first, second = _random_customers(random.Random(seed))

    await import_customers(engine, write(tmp_path, _csv(first), name="a1.csv"), batch_size=7)
    in_batches = await import_customers(engine, write(tmp_path, _csv(second), name="a2.csv"), batch_size=7)
    await _one_at_a_time(engine, _as_b(first), "one")
    one_by_one = await _one_at_a_time(engine, _as_b(second), "one")

    assert in_batches.rejected, "the second file should clash with some phones"
    assert (in_batches.created, in_batches.updated, in_batches.unchanged) == (
        one_by_one.created,
        one_by_one.updated,
        one_by_one.unchanged,
    )
    assert [(e.line, e.reason) for e in in_batches.rejected] == [
        (e.line, _as_c(e.reason)) for e in one_by_one.rejected
    ]
    assert await _stored_by_prefix(engine, "c-") == await _stored_by_prefix(engine, "b-")


async def test_an_import_cancelled_midway_keeps_the_batches_it_committed(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write(tmp_path, HEADER + "".join(f"c-{n},+7916{n:07d},{n},login{n},,,,,\n" for n in range(1, 201)))
    done: list[int] = []

    def cancel_after_the_second_batch(rows: int) -> None:
        done.append(rows)
        if len(done) == 2:
            task.cancel()

    task = asyncio.create_task(
        import_customers(engine, path, batch_size=20, progress=cancel_after_the_second_batch)
    )
    with pytest.raises(asyncio.CancelledError):
        await task

    assert done == [20, 40]
    assert len(await stored_customers(engine)) == 40
    again = await import_customers(engine, path, batch_size=20)
    assert again == ImportReport(created=160, updated=0, unchanged=40, rejected=[], imported=True)
