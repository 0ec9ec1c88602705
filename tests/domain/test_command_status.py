from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.command_status import STATUS_RULES, Action, rule_for

SMPP34_CODES = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
    0x11, 0x13, 0x14, 0x15, 0x33, 0x34, 0x40, 0x42, 0x43, 0x44, 0x45, 0x48, 0x49, 0x50, 0x51,
    0x53, 0x54, 0x55, 0x58, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xC0, 0xC1, 0xC2, 0xC3,
    0xC4, 0xFE, 0xFF,
]  # fmt: skip


def test_every_smpp34_status_has_a_rule() -> None:
    missing = [hex(code) for code in SMPP34_CODES if code not in STATUS_RULES]
    assert missing == []


def test_success_is_ok() -> None:
    assert rule_for(0) == STATUS_RULES[0]
    assert rule_for(0).action == "ok"
    assert rule_for(0).name == "ESME_ROK"


@pytest.mark.parametrize(
    ("status", "name", "action"),
    [
        (0x58, "ESME_RTHROTTLED", "throttle"),
        (0x14, "ESME_RMSGQFUL", "throttle"),
        (0x08, "ESME_RSYSERR", "retry"),
        (0x45, "ESME_RSUBMITFAIL", "retry"),
        (0xFE, "ESME_RDELIVERYFAILURE", "retry"),
        (0xFF, "ESME_RUNKNOWNERR", "retry"),
        (0x04, "ESME_RINVBNDSTS", "retry"),
        (0x64, "ESME_RX_T_APPN", "retry"),
        (0x0A, "ESME_RINVSRCADR", "fail"),
        (0x0B, "ESME_RINVDSTADR", "fail"),
        (0x65, "ESME_RX_P_APPN", "fail"),
        (0x66, "ESME_RX_R_APPN", "fail"),
        (0x01, "ESME_RINVMSGLEN", "fail"),
        (0x104, "ESME_RINVDCS", "fail"),
        (0x62, "ESME_RINVEXPIRY", "fail"),
    ],
)
def test_known_statuses(status: int, name: str, action: Action) -> None:
    rule = rule_for(status)
    assert rule.name == name
    assert rule.action == action
    assert rule.reason


def test_only_success_is_ok() -> None:
    assert [code for code, rule in STATUS_RULES.items() if rule.action == "ok"] == [0]


def test_every_rule_is_named_and_explained() -> None:
    for rule in STATUS_RULES.values():
        assert rule.name.startswith("ESME_R")
        assert rule.reason


def test_vendor_specific_status_is_retried_and_named_in_hex() -> None:
    rule = rule_for(0x40A)
    assert rule.action == "retry"
    assert "0x0000040A" in rule.reason
    assert "vendor-specific" in rule.reason


def test_unknown_status_is_retried_and_named_in_hex() -> None:
    rule = rule_for(0x9999)
    assert rule.action == "retry"
    assert "0x00009999" in rule.reason


@settings(max_examples=100)
@given(st.integers(0, 0xFFFFFFFF))
def test_any_status_has_a_rule(status: int) -> None:
    rule = rule_for(status)
    if status in STATUS_RULES:
        assert rule == STATUS_RULES[status]
    else:
        assert rule.action == "retry"
        assert f"0x{status:08X}" in rule.reason
