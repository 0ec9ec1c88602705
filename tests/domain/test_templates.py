"""Templates: parsing, validation at save time, rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsline.domain.templates import (
    MAX_SEGMENTS,
    Problem,
    TemplateError,
    check_template,
    check_values,
    placeholders,
    render,
    sample_rendering,
)


def test_placeholders_are_found_in_order_without_repeats() -> None:
    assert placeholders("{b} and {a}, then {b} again") == ["b", "a"]
    assert placeholders("no placeholders, {{literal}} braces") == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("50% {off", "stray '{'"),
        ("closing } alone", "stray '}'"),
        ("{Amount}", "is not a placeholder"),
        ("{ amount }", "is not a placeholder"),
        ("{}", "is not a placeholder"),
    ],
)
def test_malformed_texts_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError, match=fragment):
        placeholders(text)


def test_render_replaces_placeholders_and_unescapes_braces() -> None:
    assert render("Pay {amount} by {date} {{ref}}", {"amount": "10 RUB", "date": "1 May"}) == (
        "Pay 10 RUB by 1 May {ref}"
    )


def test_a_value_is_never_read_as_a_template() -> None:
    assert render("Hello {name}", {"name": "{evil} }{"}) == "Hello {evil} }{"


def test_check_template_finds_unknown_and_missing_placeholders() -> None:
    problems = check_template("payment", {"en": "Paid {amount} on {date}", "ru": "Оплачено"}, ["amount"])
    assert Problem("text_en", "uses {date}, which is not a declared parameter") in problems
    assert Problem("text_ru", "does not use the declared parameter {amount}") in problems


def test_check_template_finds_bad_names_and_repeats() -> None:
    problems = check_template("Bad Name", {"en": "{a}", "ru": "{a}"}, ["a", "a", "B"])
    fields = {p.field for p in problems}
    assert {"name", "parameters.1", "parameters.2"} <= fields


def test_check_template_limits_segments_of_the_sample() -> None:
    long_text = "Ш" * 67 * (MAX_SEGMENTS + 1)
    problems = check_template("t", {"en": "ok", "ru": long_text}, [])
    assert [p.field for p in problems] == ["text_ru"]
    assert "SMS segments" in problems[0].message


def test_a_valid_template_has_no_problems_and_reports_its_sample() -> None:
    texts = {"en": "Card {last4} ready", "ru": "Карта {last4} готова"}
    assert check_template("card_ready", texts, ["last4"], {"last4": "4242"}) == []
    assert sample_rendering(texts["ru"], ["last4"], {"last4": "4242"}).text == "Карта 4242 готова"
    default = sample_rendering(texts["en"], ["last4"])
    assert (default.text, default.encoding, default.segments) == ("Card 0000000000 ready", "gsm7", 1)


def test_values_must_match_the_declared_parameters() -> None:
    assert check_values(["a", "b"], {"a": "1", "b": "2"}) == []
    assert check_values(["a"], {}) == [Problem("parameters.a", "is required by the template")]
    assert check_values(["a"], {"a": "1", "z": "2"})[0].field == "parameters.z"


names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
literals = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)


@given(st.lists(st.one_of(literals.map(lambda t: ("text", t)), names.map(lambda n: ("name", n))), max_size=8))
def test_render_of_escaped_literals_and_placeholders_is_their_concatenation(
    pieces: list[tuple[str, str]],
) -> None:
    template = "".join(
        value.replace("{", "{{").replace("}", "}}") if kind == "text" else "{" + value + "}"
        for kind, value in pieces
    )
    values = {value: f"<{value}>" for kind, value in pieces if kind == "name"}
    expected = "".join(value if kind == "text" else f"<{value}>" for kind, value in pieces)
    assert render(template, values) == expected
    assert set(placeholders(template)) == set(values)
