"""Campaign texts: templates over customer fields, checked with the notification template parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from smsline.domain.templates import (
    MAX_SEGMENTS,
    MAX_TEXT_LENGTH,
    Piece,
    Problem,
    Rendering,
    TemplateError,
    measure,
    parse,
)

# The customer fields a campaign text may use.
FIELDS: Final = ("name", "customer_id", "phone")
SAMPLE: Final[dict[str, dict[str, str]]] = {
    "en": {"name": "Ivan Petrov", "customer_id": "C-0000000001", "phone": "+79161234567"},
    "ru": {"name": "Иван Петров", "customer_id": "C-0000000001", "phone": "+79161234567"},
}


def check_text(text: str, field: str, language: str = "en") -> list[Problem]:
    """What is wrong with a campaign text (empty list: nothing)."""
    if not text.strip():
        return [Problem(field, "is empty")]
    if len(text) > MAX_TEXT_LENGTH:
        return [Problem(field, f"is longer than {MAX_TEXT_LENGTH} characters")]
    try:
        pieces = parse(text)
    except TemplateError as exc:
        return [Problem(field, str(exc))]
    problems = [
        Problem(field, f"uses {{{p.parameter}}}, which is not a customer field (fields: {', '.join(FIELDS)})")
        for p in pieces
        if p.parameter is not None and p.parameter not in FIELDS
    ]
    if not problems:
        rendering = sample_rendering(text, language)
        if rendering.segments > MAX_SEGMENTS:
            problems.append(
                Problem(field, f"takes {rendering.segments} SMS segments; at most {MAX_SEGMENTS} are allowed")
            )
    return problems


def sample_rendering(text: str, language: str = "en") -> Rendering:
    return measure(render_pieces(parse(text), SAMPLE["ru" if language == "ru" else "en"]))


@dataclass(frozen=True, slots=True)
class CompiledText:
    """A campaign's texts parsed once, rendered per recipient."""

    en: list[Piece]
    ru: list[Piece] | None

    @classmethod
    def of(cls, text: str, text_ru: str | None) -> CompiledText:
        return cls(parse(text), parse(text_ru) if text_ru else None)

    def render(self, language: str, values: Mapping[str, str]) -> str:
        """The text for a customer of that language (``text_ru`` for ru when there is one)."""
        if language == "ru" and self.ru is not None:
            return render_pieces(self.ru, values)
        return render_pieces(self.en, values)


def render_pieces(pieces: list[Piece], values: Mapping[str, str]) -> str:
    return "".join(p.text if p.parameter is None else values.get(p.parameter, "") for p in pieces)
