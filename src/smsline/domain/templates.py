"""Notification templates: placeholders, validation when a template is saved, rendering.

A template has an English and a Russian text and declares its parameters. A text names a
parameter as ``{name}`` (lower-case letters, digits and ``_``, starting with a letter); ``{{``
and ``}}`` stand for literal braces. Everything that can be wrong with a template is found when
it is saved — an unknown placeholder, a declared parameter a text does not use, a stray brace —
so a notification never fails at send time because of its template.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from smsline.domain.segments import Encoding, choose_encoding, count_segments
from smsline.domain.texts import LANGUAGES, Language

PARAMETER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
TEMPLATE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_TEXT_LENGTH: Final = 1600
MAX_VALUE_LENGTH: Final = 500
MAX_SEGMENTS: Final = 10
DEFAULT_SAMPLE_VALUE: Final = "0" * 10

_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A text that is not a well-formed template."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a template or with the values given for it: where and why."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Piece:
    """Literal text (``parameter`` None) or a placeholder."""

    text: str
    parameter: str | None = None


def parse(text: str) -> list[Piece]:
    """The literal pieces and placeholders of ``text``; raises TemplateError."""
    pieces: list[Piece] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = match.group(1)
        if name is None:
            raise TemplateError(
                f"stray {token!r} at position {match.start()} (write {token * 2!r} for a literal brace)"
            )
        if not PARAMETER_NAME.fullmatch(name):
            raise TemplateError(
                f"{{{name}}} at position {match.start()} is not a placeholder: names are lower-case "
                "letters, digits and _, starting with a letter"
            )
        if literal:
            pieces.append(Piece("".join(literal)))
            literal = []
        pieces.append(Piece(match.group(0), name))
    literal.append(text[position:])
    if any(literal):
        pieces.append(Piece("".join(literal)))
    return pieces


def placeholders(text: str) -> list[str]:
    """The parameters ``text`` uses, in order of first use; raises TemplateError."""
    return list(dict.fromkeys(p.parameter for p in parse(text) if p.parameter is not None))


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its placeholders replaced; raises TemplateError, KeyError for a missing value."""
    return "".join(p.text if p.parameter is None else values[p.parameter] for p in _parsed(text))


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[Piece, ...]:
    """`parse`, remembered: the same few templates are rendered for every notification."""
    return tuple(parse(text))


@dataclass(frozen=True, slots=True)
class Rendering:
    """How a rendered text goes out: its text, encoding and number of SMS segments."""

    text: str
    encoding: Encoding
    segments: int


def measure(text: str) -> Rendering:
    return Rendering(text, choose_encoding(text), count_segments(text))


def _text_field(language: Language) -> str:
    return f"text_{language}"


def check_template(
    name: str,
    texts: Mapping[Language, str],
    parameters: Sequence[str],
    sample: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Everything wrong with a template; an empty list means it may be saved."""
    problems: list[Problem] = []
    if not TEMPLATE_NAME.fullmatch(name):
        problems.append(
            Problem(
                "name",
                "must be 1 to 64 characters: lower-case letters, digits, '_', '-', '.', "
                "starting with a letter or digit",
            )
        )
    declared: list[str] = []
    for index, parameter in enumerate(parameters):
        if not PARAMETER_NAME.fullmatch(parameter):
            problems.append(
                Problem(
                    f"parameters.{index}",
                    f"{parameter!r} is not a parameter name: lower-case letters, digits and _, "
                    "starting with a letter, at most 32 characters",
                )
            )
        elif parameter in declared:
            problems.append(Problem(f"parameters.{index}", f"{parameter!r} is declared twice"))
        else:
            declared.append(parameter)
    for language in LANGUAGES:
        field = _text_field(language)
        text = texts.get(language, "")
        if not text.strip():
            problems.append(Problem(field, "is empty"))
            continue
        if len(text) > MAX_TEXT_LENGTH:
            problems.append(Problem(field, f"is longer than {MAX_TEXT_LENGTH} characters"))
            continue
        try:
            used = placeholders(text)
        except TemplateError as exc:
            problems.append(Problem(field, str(exc)))
            continue
        for parameter in used:
            if parameter not in declared:
                problems.append(Problem(field, f"uses {{{parameter}}}, which is not a declared parameter"))
        for parameter in declared:
            if parameter not in used:
                problems.append(Problem(field, f"does not use the declared parameter {{{parameter}}}"))
    if sample is not None:
        problems.extend(check_values(declared, sample, field="sample"))
    if not problems:
        for language in LANGUAGES:
            try:
                rendering = sample_rendering(texts[language], declared, sample)
            except ValueError as exc:
                problems.append(Problem(_text_field(language), str(exc)))
                continue
            if rendering.segments > MAX_SEGMENTS:
                problems.append(
                    Problem(
                        _text_field(language),
                        f"takes {rendering.segments} SMS segments with the sample values; "
                        f"at most {MAX_SEGMENTS} are allowed",
                    )
                )
    return problems


def check_values(
    declared: Sequence[str], values: Mapping[str, str], *, field: str = "parameters"
) -> list[Problem]:
    """Problems with the values given for a template's parameters (all needed, no others)."""
    problems: list[Problem] = []
    for parameter in declared:
        if parameter not in values:
            problems.append(Problem(f"{field}.{parameter}", "is required by the template"))
    for parameter, value in values.items():
        if parameter not in declared:
            known = ", ".join(declared) if declared else "none"
            problems.append(
                Problem(f"{field}.{parameter}", f"is not a parameter of the template (it has: {known})")
            )
        elif len(value) > MAX_VALUE_LENGTH:
            problems.append(Problem(f"{field}.{parameter}", f"is longer than {MAX_VALUE_LENGTH} characters"))
    return problems


def sample_rendering(
    text: str, declared: Sequence[str], sample: Mapping[str, str] | None = None
) -> Rendering:
    """The text rendered with the sample values (``DEFAULT_SAMPLE_VALUE`` where none is given)."""
    values = {parameter: DEFAULT_SAMPLE_VALUE for parameter in declared}
    values.update(sample or {})
    return measure(render(text, values))
