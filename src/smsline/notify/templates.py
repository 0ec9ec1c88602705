"""Notification templates in the database: save (validated first), read, list, delete."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from smsline.db.schema import templates
from smsline.domain.templates import Problem, Rendering, check_template, sample_rendering
from smsline.domain.texts import LANGUAGES, Language


class InvalidTemplate(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    texts: dict[Language, str]
    parameters: tuple[str, ...]
    sample: dict[str, str] | None
    essential: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str

    @classmethod
    def from_row(cls, row: RowMapping) -> Template:
        return cls(
            name=row["name"],
            texts={"en": row["text_en"], "ru": row["text_ru"]},
            parameters=tuple(row["parameters"].split()),
            sample=json.loads(row["sample"]) if row["sample"] else None,
            essential=row["essential"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            updated_by=row["updated_by"],
        )

    def renderings(self) -> dict[Language, Rendering]:
        """Each text rendered with the sample values: what an SMS of it looks like."""
        return {
            language: sample_rendering(self.texts[language], self.parameters, self.sample)
            for language in LANGUAGES
        }


def save_template(
    conn: Connection,
    name: str,
    texts: Mapping[Language, str],
    parameters: Sequence[str],
    *,
    sample: Mapping[str, str] | None = None,
    essential: bool = False,
    actor: str,
) -> tuple[Template, bool]:
    """Create or replace the template ``name``; (the template, whether it is new).

    Raises InvalidTemplate, before writing anything, when the template is not valid."""
    problems = check_template(name, texts, parameters, sample)
    if problems:
        raise InvalidTemplate(problems)
    now = dt.datetime.now(dt.UTC)
    values = {
        "text_en": texts["en"],
        "text_ru": texts["ru"],
        "parameters": " ".join(parameters),
        "sample": json.dumps(dict(sample), ensure_ascii=False, sort_keys=True) if sample else None,
        "essential": essential,
        "updated_at": now,
        "updated_by": actor[:128],
    }
    changed = conn.execute(update(templates).where(templates.c.name == name).values(**values))
    created = not changed.rowcount
    if created:
        conn.execute(insert(templates).values(name=name, created_at=now, **values))
    template = get_template(conn, name)
    assert template is not None
    return template, created


def get_template(conn: Connection, name: str) -> Template | None:
    row = conn.execute(select(templates).where(templates.c.name == name)).mappings().first()
    return Template.from_row(row) if row is not None else None


def list_templates(conn: Connection) -> list[Template]:
    return [
        Template.from_row(row)
        for row in conn.execute(select(templates).order_by(templates.c.name)).mappings()
    ]


def delete_template(conn: Connection, name: str) -> bool:
    return bool(conn.execute(delete(templates).where(templates.c.name == name)).rowcount)
