from __future__ import annotations

import random
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.receipts import (
    FINAL_STATUSES,
    MESSAGE_STATE_TO_STATUS,
    STAT_TO_STATUS,
    IdBase,
    MessageStatus,
    ReceiptText,
    _parse_any_layout,
    canonical_message_id,
    merge_part_statuses,
    parse_receipt_text,
    status_from_receipt,
)

STANDARD = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
    "stat:DELIVRD err:000 text:Your request has b"
)


def test_standard_receipt_is_read() -> None:
    assert parse_receipt_text(STANDARD) == ReceiptText(
        message_id="0123456789",
        stat="DELIVRD",
        err="000",
        submit_date="2401011200",
        done_date="2401011201",
        dlvrd="001",
        sub="001",
    )


def test_receipt_in_lowercase_with_underscores_and_extra_spaces() -> None:
    receipt = parse_receipt_text(
        "  ID:  a1B2  Sub :1   DLVRD:0 submit_date:2401011200  Done_Date: 2401011305 Stat:undeliv  Err : 034 "
    )
    assert receipt == ReceiptText(
        message_id="a1B2",
        stat="UNDELIV",
        err="034",
        submit_date="2401011200",
        done_date="2401011305",
        dlvrd="0",
        sub="1",
    )


def test_missing_fields_are_none() -> None:
    receipt = parse_receipt_text("id:42 stat:EXPIRED")
    assert receipt.message_id == "42"
    assert receipt.stat == "EXPIRED"
    assert receipt.err is None
    assert receipt.submit_date is None
    assert receipt.done_date is None
    assert receipt.dlvrd is None
    assert receipt.sub is None


def test_text_that_is_no_receipt_gives_no_fields() -> None:
    assert parse_receipt_text("hello there") == ReceiptText(None, None, None, None, None, None, None)
    assert parse_receipt_text("") == ReceiptText(None, None, None, None, None, None, None)


def test_message_content_after_text_is_not_kept_nor_read() -> None:
    receipt = parse_receipt_text("id:7 stat:DELIVRD err:000 text:password: 1a2b3c4d stat:UNDELIV id:99")
    assert receipt.message_id == "7"
    assert receipt.stat == "DELIVRD"
    assert "1a2b3c4d" not in repr(receipt)


def test_field_with_empty_value_is_none() -> None:
    receipt = parse_receipt_text("id: stat:DELIVRD")
    assert receipt.message_id is None
    assert receipt.stat == "DELIVRD"


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", "delivered"),
        ("UNDELIV", "undeliverable"),
        ("EXPIRED", "expired"),
        ("REJECTD", "rejected"),
        ("DELETED", "failed"),
        ("UNKNOWN", "failed"),
        ("ACCEPTD", "submitted"),
        ("ENROUTE", "submitted"),
        ("delivrd", "delivered"),
    ],
)
def test_receipt_stat_gives_the_message_status(stat: str, status: MessageStatus) -> None:
    assert status_from_receipt(stat, None) == status


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (1, "submitted"),
        (2, "delivered"),
        (3, "expired"),
        (4, "failed"),
        (5, "undeliverable"),
        (6, "submitted"),
        (7, "failed"),
        (8, "rejected"),
        (9, "failed"),
    ],
)
def test_message_state_tlv_gives_the_message_status(state: int, status: MessageStatus) -> None:
    assert status_from_receipt(None, state) == status
    assert MESSAGE_STATE_TO_STATUS[state] == status


def test_message_state_tlv_wins_over_the_text() -> None:
    assert status_from_receipt("DELIVRD", 5) == "undeliverable"


def test_unknown_message_state_falls_back_to_the_text() -> None:
    assert status_from_receipt("DELIVRD", 42) == "delivered"


def test_unreadable_receipt_has_no_status() -> None:
    assert status_from_receipt(None, None) is None
    assert status_from_receipt("WHATEVER", None) is None


def test_final_statuses() -> None:
    assert {"delivered", "undeliverable", "expired", "rejected", "failed"} == FINAL_STATUSES
    assert STAT_TO_STATUS["ENROUTE"] not in FINAL_STATUSES


@pytest.mark.parametrize(
    ("resp_id", "receipt_id", "base"),
    [
        ("00FF", "255", "resp_hex_receipt_dec"),
        ("ff", "0000000255", "resp_hex_receipt_dec"),
        ("12345", "74565", "resp_hex_receipt_dec"),
        ("255", "FF", "resp_dec_receipt_hex"),
        ("255\x00", " 000ff ", "resp_dec_receipt_hex"),
        ("AbC-1", "abc-1", "same"),
        ("0042", "42", "same"),
        (" 7A3F\x00", "7a3f", "same"),
        ("msg-1", "MSG-1", "resp_hex_receipt_dec"),
    ],
)
def test_ids_of_response_and_receipt_compare_equal(resp_id: str, receipt_id: str, base: IdBase) -> None:
    assert canonical_message_id(resp_id, side="resp", base=base) == canonical_message_id(
        receipt_id, side="receipt", base=base
    )


@pytest.mark.parametrize(
    ("resp_id", "receipt_id", "base"),
    [
        ("10", "10", "resp_hex_receipt_dec"),
        ("10", "10", "resp_dec_receipt_hex"),
        ("12", "13", "same"),
        ("abc-1", "abc-2", "same"),
    ],
)
def test_different_messages_do_not_compare_equal(resp_id: str, receipt_id: str, base: IdBase) -> None:
    assert canonical_message_id(resp_id, side="resp", base=base) != canonical_message_id(
        receipt_id, side="receipt", base=base
    )


def test_canonical_numeric_id_is_decimal_without_leading_zeros() -> None:
    assert canonical_message_id("000A", side="resp", base="resp_hex_receipt_dec") == "10"
    assert canonical_message_id("0000", side="receipt", base="resp_hex_receipt_dec") == "0"


bases: st.SearchStrategy[IdBase] = st.sampled_from(["same", "resp_hex_receipt_dec", "resp_dec_receipt_hex"])
sides: st.SearchStrategy[Literal["resp", "receipt"]] = st.sampled_from(["resp", "receipt"])


@settings(max_examples=100)
@given(st.integers(0, 2**64), bases)
def test_same_number_in_each_sides_base_compares_equal(number: int, base: IdBase) -> None:
    resp = f"{number:X}" if base == "resp_hex_receipt_dec" else str(number)
    receipt = f"{number:x}" if base == "resp_dec_receipt_hex" else str(number)
    assert canonical_message_id("00" + resp + "\x00", side="resp", base=base) == canonical_message_id(
        receipt, side="receipt", base=base
    )


@settings(max_examples=100)
@given(st.text(max_size=80), sides, bases, st.text(" \t\r\n\x00", max_size=3))
def test_padding_around_an_id_does_not_matter(
    raw: str, side: Literal["resp", "receipt"], base: IdBase, padding: str
) -> None:
    key = canonical_message_id(raw, side=side, base=base)
    assert canonical_message_id(padding + raw + padding, side=side, base=base) == key
    if raw.isascii():
        upper = canonical_message_id(raw.upper(), side=side, base=base)
        assert upper == canonical_message_id(raw.lower(), side=side, base=base)


@pytest.mark.parametrize(
    ("statuses", "merged"),
    [
        (["delivered"], "delivered"),
        (["delivered", "delivered", "delivered"], "delivered"),
        (["delivered", "submitted"], "submitted"),
        (["delivered", "expired"], "expired"),
        (["expired", "undeliverable", "delivered"], "undeliverable"),
        (["failed", "expired"], "expired"),
        (["rejected", "undeliverable"], "rejected"),
        (["failed", "submitted"], "failed"),
        (["submitted", "submitted"], "submitted"),
        (["queued", "queued"], "queued"),
        (["queued", "submitted"], "sending"),
        (["sending", "delivered"], "sending"),
    ],
)
def test_multipart_status_aggregates_its_parts(statuses: list[MessageStatus], merged: MessageStatus) -> None:
    assert merge_part_statuses(statuses) == merged


def test_message_without_parts_has_no_status() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        merge_part_statuses([])


statuses_strategy: st.SearchStrategy[MessageStatus] = st.sampled_from(
    [
        "queued",
        "sending",
        "submitted",
        "delivered",
        "undeliverable",
        "expired",
        "rejected",
        "failed",
    ]
)


@settings(max_examples=100)
@given(st.lists(statuses_strategy, min_size=1, max_size=8), st.randoms())
def test_multipart_status_ignores_part_order(statuses: list[MessageStatus], shuffler: random.Random) -> None:
    shuffled = list(statuses)
    shuffler.shuffle(shuffled)
    merged = merge_part_statuses(statuses)
    assert merge_part_statuses(shuffled) == merged
    assert (merged == "delivered") == all(status == "delivered" for status in statuses)


printable_but_colon = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":")
values = st.text(printable_but_colon, min_size=1, max_size=12)


@given(st.lists(values, min_size=7, max_size=7), st.text(max_size=40), st.booleans())
def test_the_standard_layout_reads_as_the_general_reading_does(
    fields: list[str], content: str, with_text: bool
) -> None:
    """Receipts in the exact Appendix B layout take a one-match shortcut; whatever the values,
    they must read exactly as the field-by-field reading of any layout reads them."""
    message_id, sub, dlvrd, submit_date, done_date, stat, err = fields
    text = (
        f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} done date:{done_date} "
        f"stat:{stat} err:{err}" + (f" text:{content}" if with_text else "")
    )
    assert parse_receipt_text(text) == _parse_any_layout(text)
    assert parse_receipt_text(text).message_id == message_id
