"""What to do about each SMPP command_status an SMSC answers with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Action = Literal["ok", "retry", "throttle", "fail"]


@dataclass(frozen=True, slots=True)
class StatusRule:
    """The name of a command_status, what to do about it, and why, for an operator."""

    name: str
    action: Action
    reason: str


def _table(*rows: tuple[int, str, Action, str]) -> dict[int, StatusRule]:
    return {code: StatusRule(name=name, action=action, reason=reason) for code, name, action, reason in rows}


# SMPP 3.4 section 5.1.3, with the codes SMPP 5.0 added (0x100-0x112).
STATUS_RULES: Final[dict[int, StatusRule]] = _table(
    (0x00, "ESME_ROK", "ok", "no error"),
    (0x01, "ESME_RINVMSGLEN", "fail", "message length is invalid"),
    (0x02, "ESME_RINVCMDLEN", "fail", "command length is invalid"),
    (0x03, "ESME_RINVCMDID", "fail", "invalid command id"),
    (0x04, "ESME_RINVBNDSTS", "retry", "incorrect bind status for the command"),
    (0x05, "ESME_RALYBND", "retry", "already in bound state"),
    (0x06, "ESME_RINVPRTFLG", "fail", "invalid priority flag"),
    (0x07, "ESME_RINVREGDLVFLG", "fail", "invalid registered delivery flag"),
    (0x08, "ESME_RSYSERR", "retry", "SMSC system error"),
    (0x0A, "ESME_RINVSRCADR", "fail", "invalid source address"),
    (0x0B, "ESME_RINVDSTADR", "fail", "invalid destination address"),
    (0x0C, "ESME_RINVMSGID", "fail", "message id is invalid"),
    (0x0D, "ESME_RBINDFAIL", "retry", "bind failed"),
    (0x0E, "ESME_RINVPASWD", "fail", "invalid password"),
    (0x0F, "ESME_RINVSYSID", "fail", "invalid system id"),
    (0x11, "ESME_RCANCELFAIL", "fail", "cancel_sm failed"),
    (0x13, "ESME_RREPLACEFAIL", "fail", "replace_sm failed"),
    (0x14, "ESME_RMSGQFUL", "throttle", "SMSC message queue full"),
    (0x15, "ESME_RINVSERTYP", "fail", "invalid service type"),
    (0x33, "ESME_RINVNUMDESTS", "fail", "invalid number of destinations"),
    (0x34, "ESME_RINVDLNAME", "fail", "invalid distribution list name"),
    (0x40, "ESME_RINVDESTFLAG", "fail", "invalid destination flag"),
    (0x42, "ESME_RINVSUBREP", "fail", "invalid submit with replace request"),
    (0x43, "ESME_RINVESMCLASS", "fail", "invalid esm_class"),
    (0x44, "ESME_RCNTSUBDL", "fail", "cannot submit to distribution list"),
    (0x45, "ESME_RSUBMITFAIL", "retry", "submit_sm failed"),
    (0x48, "ESME_RINVSRCTON", "fail", "invalid source address TON"),
    (0x49, "ESME_RINVSRCNPI", "fail", "invalid source address NPI"),
    (0x50, "ESME_RINVDSTTON", "fail", "invalid destination address TON"),
    (0x51, "ESME_RINVDSTNPI", "fail", "invalid destination address NPI"),
    (0x53, "ESME_RINVSYSTYP", "fail", "invalid system type"),
    (0x54, "ESME_RINVREPFLAG", "fail", "invalid replace_if_present flag"),
    (0x55, "ESME_RINVNUMMSGS", "fail", "invalid number of messages"),
    (0x58, "ESME_RTHROTTLED", "throttle", "throttled by the SMSC"),
    (0x61, "ESME_RINVSCHED", "fail", "invalid scheduled delivery time"),
    (0x62, "ESME_RINVEXPIRY", "fail", "invalid validity period"),
    (0x63, "ESME_RINVDFTMSGID", "fail", "predefined message invalid or not found"),
    (0x64, "ESME_RX_T_APPN", "retry", "temporary application error at the receiver"),
    (0x65, "ESME_RX_P_APPN", "fail", "permanent application error at the receiver"),
    (0x66, "ESME_RX_R_APPN", "fail", "message rejected by the receiver"),
    (0x67, "ESME_RQUERYFAIL", "fail", "query_sm failed"),
    (0xC0, "ESME_RINVOPTPARSTREAM", "fail", "error in the optional part of the PDU"),
    (0xC1, "ESME_ROPTPARNOTALLWD", "fail", "optional parameter not allowed"),
    (0xC2, "ESME_RINVPARLEN", "fail", "invalid parameter length"),
    (0xC3, "ESME_RMISSINGOPTPARAM", "fail", "expected optional parameter missing"),
    (0xC4, "ESME_RINVOPTPARAMVAL", "fail", "invalid optional parameter value"),
    (0xFE, "ESME_RDELIVERYFAILURE", "retry", "delivery failure"),
    (0xFF, "ESME_RUNKNOWNERR", "retry", "unknown error"),
    (0x100, "ESME_RSERTYPUNAUTH", "fail", "not authorised to use the service type"),
    (0x101, "ESME_RPROHIBITED", "fail", "prohibited from using the operation"),
    (0x102, "ESME_RSERTYPUNAVAIL", "retry", "service type unavailable"),
    (0x103, "ESME_RSERTYPDENIED", "fail", "service type denied"),
    (0x104, "ESME_RINVDCS", "fail", "invalid data coding scheme"),
    (0x105, "ESME_RINVSRCADDRSUBUNIT", "fail", "invalid source address subunit"),
    (0x106, "ESME_RINVDSTADDRSUBUNIT", "fail", "invalid destination address subunit"),
    (0x107, "ESME_RINVBCASTFREQINT", "fail", "invalid broadcast frequency interval"),
    (0x108, "ESME_RINVBCASTALIAS_NAME", "fail", "invalid broadcast alias name"),
    (0x109, "ESME_RINVBCASTAREAFMT", "fail", "invalid broadcast area format"),
    (0x10A, "ESME_RINVNUMBCAST_AREAS", "fail", "invalid number of broadcast areas"),
    (0x10B, "ESME_RINVBCASTCNTTYPE", "fail", "invalid broadcast content type"),
    (0x10C, "ESME_RINVBCASTMSGCLASS", "fail", "invalid broadcast message class"),
    (0x10D, "ESME_RBCASTFAIL", "fail", "broadcast_sm failed"),
    (0x10E, "ESME_RBCASTQUERYFAIL", "fail", "query_broadcast_sm failed"),
    (0x10F, "ESME_RBCASTCANCELFAIL", "fail", "cancel_broadcast_sm failed"),
    (0x110, "ESME_RINVBCAST_REP", "fail", "invalid number of broadcast repetitions"),
    (0x111, "ESME_RINVBCASTSRVGRP", "fail", "invalid broadcast service group"),
    (0x112, "ESME_RINVBCASTCHANIND", "fail", "invalid broadcast channel indicator"),
)

VENDOR_SPECIFIC: Final = range(0x400, 0x500)


def rule_for(status: int) -> StatusRule:
    """The rule for a command_status; codes this table does not know are retried."""
    rule = STATUS_RULES.get(status)
    if rule is not None:
        return rule
    if status in VENDOR_SPECIFIC:
        return StatusRule(
            name=f"0x{status:08X}",
            action="retry",
            reason=f"vendor-specific error 0x{status:08X} of the SMSC",
        )
    return StatusRule(
        name=f"0x{status:08X}",
        action="retry",
        reason=f"unknown command_status 0x{status:08X}",
    )
