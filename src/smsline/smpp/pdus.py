"""SMPP 3.4 PDUs: encoding, decoding and the builders smsline uses, over the ``smpp.pdu3`` codec.

The codec's objects carry enum wrappers; the functions here translate them to the plain integers
and strings the rest of smsline works with.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from smpp.pdu import constants, operations, pdu_types
from smpp.pdu.error import PDUParseError
from smpp.pdu.pdu_encoding import DataCodingEncoder, PDUEncoder

Pdu = Any  # smpp.pdu3's PDU objects are untyped

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU_LEN = 65_536

CommandId = pdu_types.CommandId
CommandStatus = pdu_types.CommandStatus

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64

TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_ALPHANUMERIC = 5
NPI_UNKNOWN = 0
NPI_ISDN = 1

_encoder = PDUEncoder()
_data_coding = DataCodingEncoder()
_status_by_value = {value: name for name, value in constants.command_status_name_map.items()}
_ton_by_value = {value: name for name, value in constants.addr_ton_name_map.items()}
_npi_by_value = {value: name for name, value in constants.addr_npi_name_map.items()}


class PduError(Exception):
    """A PDU that cannot be decoded; ``status`` is the command_status to answer it with."""

    def __init__(self, message: str, status: int, sequence: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.sequence = sequence


@dataclass(frozen=True, slots=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int


def parse_header(data: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    length, command_id, status, sequence = HEADER.unpack_from(data, offset)
    return Header(length, command_id, status, sequence)


def encode(pdu: Pdu) -> bytes:
    # The codec's TLV encoder checks variable-length values (message_payload…) against the
    # length of the last TLV it decoded; encoding must not depend on what was decoded before.
    _encoder.optionEncoder.length = None
    if pdu.seqNum == 0:
        # The codec refuses sequence 0, which a generic_nack for an unreadable header carries.
        pdu.seqNum = 1
        try:
            data = bytearray(_encoder.encode(pdu))
        finally:
            pdu.seqNum = 0
        data[12:16] = bytes(4)
        return bytes(data)
    return bytes(_encoder.encode(pdu))


def decode(data: bytes) -> Pdu:
    """Decode one whole PDU; raises PduError (with the status to answer) when it is malformed."""
    try:
        return _encoder.decode(io.BytesIO(data))
    except PDUParseError as exc:
        header = parse_header(data) if len(data) >= HEADER_LEN else None
        status = constants.command_status_name_map.get(exc.status.name, ESME_RSYSERR)
        raise PduError(str(exc), status, header.sequence if header else None) from exc
    except Exception as exc:  # the codec raises plain errors on some corrupt input
        header = parse_header(data) if len(data) >= HEADER_LEN else None
        raise PduError(f"malformed PDU: {exc}", ESME_RSYSERR, header.sequence if header else None) from exc


def status_of(pdu: Pdu) -> int:
    return int(constants.command_status_name_map[pdu.status.name])


def status_enum(value: int) -> Any:
    name = _status_by_value.get(value)
    if name is None:
        return CommandStatus.ESME_RUNKNOWNERR
    return getattr(CommandStatus, name)


def status_name(value: int) -> str:
    return str(_status_by_value.get(value, f"0x{value:08X}"))


def command_name(pdu: Pdu) -> str:
    return str(pdu.id.name)


def is_response(pdu: Pdu) -> bool:
    return bool(constants.command_id_name_map[pdu.id.name] & 0x80000000)


def data_coding_of(pdu: Pdu) -> int:
    value = pdu.params.get("data_coding")
    return 0 if value is None else int(_data_coding._encodeAsInt(value))


def raw_data_coding(value: int) -> Any:
    return pdu_types.DataCoding(scheme=pdu_types.DataCodingScheme.RAW, schemeData=value)


def ton(value: int) -> Any:
    return getattr(pdu_types.AddrTon, _ton_by_value[value])


def npi(value: int) -> Any:
    return getattr(pdu_types.AddrNpi, _npi_by_value[value])


def ton_value(member: Any) -> int:
    return 0 if member is None else int(constants.addr_ton_name_map[member.name])


def has_udhi(pdu: Pdu) -> bool:
    esm = pdu.params.get("esm_class")
    return esm is not None and pdu_types.EsmClassGsmFeatures.UDHI_INDICATOR_SET in esm.gsmFeatures


def is_delivery_receipt(pdu: Pdu) -> bool:
    esm = pdu.params.get("esm_class")
    if esm is None:
        return False
    return esm.type in (
        pdu_types.EsmClassType.SMSC_DELIVERY_RECEIPT,
        pdu_types.EsmClassType.INTERMEDIATE_DELIVERY_NOTIFICATION,
    )


def text_bytes(pdu: Pdu) -> bytes:
    """The short_message, or the message_payload TLV when the message travels in that."""
    payload = pdu.params.get("message_payload")
    if payload:
        return bytes(payload)
    short = pdu.params.get("short_message")
    return bytes(short) if short else b""


def str_param(pdu: Pdu, name: str) -> str:
    value = pdu.params.get(name)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def int_param(pdu: Pdu, name: str) -> int | None:
    value = pdu.params.get(name)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return int(constants.message_state_name_map[value.name]) if name == "message_state" else None


def _esm_class(*, udhi: bool, receipt: bool = False) -> Any:
    features = [pdu_types.EsmClassGsmFeatures.UDHI_INDICATOR_SET] if udhi else []
    kind = pdu_types.EsmClassType.SMSC_DELIVERY_RECEIPT if receipt else pdu_types.EsmClassType.DEFAULT
    return pdu_types.EsmClass(pdu_types.EsmClassMode.DEFAULT, kind, features)


def _registered(receipt: bool) -> Any:
    flag = (
        pdu_types.RegisteredDeliveryReceipt.SMSC_DELIVERY_RECEIPT_REQUESTED
        if receipt
        else pdu_types.RegisteredDeliveryReceipt.NO_SMSC_DELIVERY_RECEIPT_REQUESTED
    )
    return pdu_types.RegisteredDelivery(flag)


def bind(command: str, *, system_id: str, password: str, system_type: str = "") -> Pdu:
    klass = {
        "bind_transceiver": operations.BindTransceiver,
        "bind_transmitter": operations.BindTransmitter,
        "bind_receiver": operations.BindReceiver,
    }[command]
    return klass(
        system_id=system_id,
        password=password,
        system_type=system_type,
        interface_version=0x34,
        addr_ton=pdu_types.AddrTon.UNKNOWN,
        addr_npi=pdu_types.AddrNpi.UNKNOWN,
        address_range="",
    )


def bind_resp(request: Pdu, *, status: int, system_id: str) -> Pdu:
    klass = request.requireAck
    if status != ESME_ROK:
        return klass(seqNum=request.seqNum, status=status_enum(status))
    return klass(seqNum=request.seqNum, system_id=system_id)


@dataclass(frozen=True, slots=True)
class Sar:
    reference: int
    total: int
    seq: int


def submit_sm(
    *,
    source: str,
    source_ton: int,
    source_npi: int,
    destination: str,
    data_coding: int,
    short_message: bytes,
    udhi: bool = False,
    registered_delivery: bool = True,
    sar: Sar | None = None,
    message_payload: bytes | None = None,
) -> Pdu:
    optional: dict[str, Any] = {}
    if sar is not None:
        optional["sar_msg_ref_num"] = sar.reference
        optional["sar_total_segments"] = sar.total
        optional["sar_segment_seqnum"] = sar.seq
    if message_payload is not None:
        optional["message_payload"] = message_payload
    return operations.SubmitSM(
        service_type="",
        source_addr_ton=ton(source_ton),
        source_addr_npi=npi(source_npi),
        source_addr=source,
        dest_addr_ton=pdu_types.AddrTon.INTERNATIONAL,
        dest_addr_npi=pdu_types.AddrNpi.ISDN,
        destination_addr=destination,
        esm_class=_esm_class(udhi=udhi),
        protocol_id=0,
        priority_flag=pdu_types.PriorityFlag.LEVEL_0,
        registered_delivery=_registered(registered_delivery),
        replace_if_present_flag=pdu_types.ReplaceIfPresentFlag.DO_NOT_REPLACE,
        data_coding=raw_data_coding(data_coding),
        sm_default_msg_id=0,
        short_message=b"" if message_payload is not None else short_message,
        **optional,
    )


def submit_sm_resp(request: Pdu, *, status: int = ESME_ROK, message_id: str = "") -> Pdu:
    if status != ESME_ROK:
        return operations.SubmitSMResp(seqNum=request.seqNum, status=status_enum(status))
    return operations.SubmitSMResp(seqNum=request.seqNum, message_id=message_id)


def deliver_sm(
    *,
    source: str,
    source_ton: int,
    destination: str,
    data_coding: int,
    short_message: bytes,
    udhi: bool = False,
    receipt: bool = False,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
    sar: Sar | None = None,
    message_payload: bytes | None = None,
    user_message_reference: int | None = None,
) -> Pdu:
    optional: dict[str, Any] = {}
    if user_message_reference is not None:
        optional["user_message_reference"] = user_message_reference
    if receipted_message_id is not None:
        optional["receipted_message_id"] = receipted_message_id
    if message_state is not None:
        name = {v: k for k, v in constants.message_state_name_map.items()}[message_state]
        optional["message_state"] = getattr(pdu_types.MessageState, name)
    if sar is not None:
        optional["sar_msg_ref_num"] = sar.reference
        optional["sar_total_segments"] = sar.total
        optional["sar_segment_seqnum"] = sar.seq
    if message_payload is not None:
        optional["message_payload"] = message_payload
    return operations.DeliverSM(
        service_type="",
        source_addr_ton=ton(source_ton),
        source_addr_npi=npi(NPI_ISDN if source_ton == TON_INTERNATIONAL else NPI_UNKNOWN),
        source_addr=source,
        dest_addr_ton=pdu_types.AddrTon.INTERNATIONAL,
        dest_addr_npi=pdu_types.AddrNpi.ISDN,
        destination_addr=destination,
        esm_class=_esm_class(udhi=udhi, receipt=receipt),
        protocol_id=0,
        priority_flag=pdu_types.PriorityFlag.LEVEL_0,
        registered_delivery=_registered(False),
        replace_if_present_flag=pdu_types.ReplaceIfPresentFlag.DO_NOT_REPLACE,
        data_coding=raw_data_coding(data_coding),
        sm_default_msg_id=0,
        short_message=b"" if message_payload is not None else short_message,
        **optional,
    )


def deliver_sm_resp(request: Pdu, *, status: int = ESME_ROK) -> Pdu:
    return operations.DeliverSMResp(seqNum=request.seqNum, status=status_enum(status))


def enquire_link() -> Pdu:
    return operations.EnquireLink()


def enquire_link_resp(request: Pdu) -> Pdu:
    return operations.EnquireLinkResp(seqNum=request.seqNum)


def unbind() -> Pdu:
    return operations.Unbind()


def unbind_resp(request: Pdu) -> Pdu:
    return operations.UnbindResp(seqNum=request.seqNum)


def generic_nack(sequence: int, status: int) -> Pdu:
    return operations.GenericNack(seqNum=sequence, status=status_enum(status))


def sar_of(pdu: Pdu) -> Sar | None:
    ref = pdu.params.get("sar_msg_ref_num")
    total = pdu.params.get("sar_total_segments")
    seq = pdu.params.get("sar_segment_seqnum")
    if ref is None or total is None or seq is None:
        return None
    return Sar(int(ref), int(total), int(seq))
