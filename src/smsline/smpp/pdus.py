"""SMPP 3.4 PDUs: encoding, decoding and the builders smsline uses, over the ``smpp.pdu3`` codec.

The codec's objects carry enum wrappers; the functions here translate them to the plain integers
and strings the rest of smsline works with.
"""

from __future__ import annotations

import io
import operator
import struct
from dataclasses import dataclass
from typing import Any

from smpp.pdu import constants, operations, pdu_types
from smpp.pdu.error import PDUParseError
from smpp.pdu.pdu_encoding import DataCodingEncoder, PDUEncoder, RegisteredDeliveryEncoder

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
_registered_delivery = RegisteredDeliveryEncoder()
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
    if type(pdu) is EncodedRequest:
        return HEADER.pack(HEADER_LEN + len(pdu.body), pdu.command_id, 0, pdu.seqNum) + pdu.body
    data = _fast_encode(pdu)
    return data if data is not None else _codec_encode(pdu)


def decode(data: bytes) -> Pdu:
    """Decode one whole PDU; raises PduError (with the status to answer) when it is malformed."""
    pdu = _fast_decode(data)
    return pdu if pdu is not None else _codec_decode(data)


def _codec_encode(pdu: Pdu) -> bytes:
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


def _codec_decode(data: bytes) -> Pdu:
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
    value = _STATUS_VALUE.get(id(pdu.status))  # an Enum's .name is a slow property
    return value if value is not None else int(constants.command_status_name_map[pdu.status.name])


def status_enum(value: int) -> Any:
    name = _status_by_value.get(value)
    if name is None:
        return CommandStatus.ESME_RUNKNOWNERR
    return getattr(CommandStatus, name)


def status_name(value: int) -> str:
    return str(_status_by_value.get(value, f"0x{value:08X}"))


def command_name(pdu: Pdu) -> str:
    name = _COMMAND_NAMES.get(id(pdu.id))
    return name if name is not None else str(pdu.id.name)


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


class EncodedRequest:
    """A request already encoded but for its header, where the codec's PDU object would only be
    built to be encoded: the dispatcher's submit_sm, one per message. A session sends it like any
    other PDU (it sets ``seqNum``); ``command_name`` works on it, its fields are not read back."""

    __slots__ = ("body", "command_id", "id", "seqNum")

    def __init__(self, command: Any, body: bytes) -> None:
        self.id = command
        self.command_id: int = constants.command_id_name_map[command.name]
        self.body = body
        self.seqNum = 0


def submit_sm_encoded(
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
) -> EncodedRequest:
    """`submit_sm` with the same arguments, encoded at once to exactly the same octets."""
    command = CommandId.submit_sm
    try:
        source_octets = source.encode("ascii")
        destination_octets = destination.encode("ascii")
        if message_payload is not None:
            short_message = b""
        if len(source_octets) > 20 or len(destination_octets) > 20 or len(short_message) > 254:
            raise _Unsupported
        if b"\0" in source_octets or b"\0" in destination_octets:
            raise _Unsupported
        fixed = _SM_FIXED.pack(
            0x40 if udhi else 0,  # esm_class: default mode and type, UDHI as asked
            0,  # protocol_id
            0,  # priority_flag
            0,  # schedule_delivery_time: empty
            0,  # validity_period: empty
            1 if registered_delivery else 0,
            0,  # replace_if_present_flag
            _int(data_coding, 0xFF),
            0,  # sm_default_msg_id
            len(short_message),
        )
        parts = [
            _ADDRESS_TYPE.pack(_int(source_ton, 0xFF), _int(source_npi, 0xFF)),  # after service_type ""
            source_octets,
            _ADDRESS_TYPE.pack(1, 1),  # destination: international, ISDN
            destination_octets,
            fixed,
            short_message,
        ]
        optional: list[tuple[str, Any]] = []
        if sar is not None:
            optional += [
                ("sar_msg_ref_num", sar.reference),
                ("sar_total_segments", sar.total),
                ("sar_segment_seqnum", sar.seq),
            ]
        if message_payload is not None:
            optional.append(("message_payload", message_payload))
        if optional:
            values = dict(optional)
            for name, tag, kind in _ENCODE_TLVS[_SubmitSM]:  # in the codec's order
                if name in values:
                    parts.append(_encode_tlv(tag, kind, values.pop(name)))
            if values:
                raise _Unsupported
        body = b"".join(parts)
    except _FALLBACK_ERRORS:  # anything unusual: the codec's own encoding (or its error)
        pdu = submit_sm(
            source=source, source_ton=source_ton, source_npi=source_npi, destination=destination,
            data_coding=data_coding, short_message=short_message, udhi=udhi,
            registered_delivery=registered_delivery, sar=sar, message_payload=message_payload,
        )
        pdu.seqNum = 1
        body = encode(pdu)[HEADER_LEN:]
    return EncodedRequest(command, body)


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


# -- fast path ----------------------------------------------------------------------------------
#
# The hot PDUs are encoded and decoded here by hand, into and from exactly the objects and bytes
# the codec produces. Whatever this code does not fully understand (an unhandled TLV, a time
# field, an unusual value type, a malformed frame) raises _Unsupported or fails a lookup, and the
# codec takes that PDU instead: it stays the reference and the source of the error statuses.


class _Unsupported(Exception):
    """A PDU the fast path leaves to the codec."""


_FALLBACK_ERRORS = (_Unsupported, KeyError, IndexError, TypeError, ValueError, AttributeError, struct.error)

_SubmitSM = operations.SubmitSM
_SubmitSMResp = operations.SubmitSMResp
_DeliverSM = operations.DeliverSM
_DeliverSMResp = operations.DeliverSMResp
_EnquireLink = operations.EnquireLink
_EnquireLinkResp = operations.EnquireLinkResp
_GenericNack = operations.GenericNack
_FAST_CLASSES: dict[int, Any] = {
    constants.command_id_name_map[klass.commandId.name]: klass
    for klass in (
        _SubmitSM, _SubmitSMResp, _DeliverSM, _DeliverSMResp, _EnquireLink, _EnquireLinkResp, _GenericNack
    )
}
_COMMAND_ID_VALUE: dict[Any, int] = {klass: value for value, klass in _FAST_CLASSES.items()}
_SM_MANDATORY = len(_SubmitSM.mandatoryParams)
_sm_fields = operator.itemgetter(*_SubmitSM.mandatoryParams)
_TLV_HEAD = struct.Struct(">HH")
_ADDRESS_TYPE = struct.Struct(">xBB")
_SM_FIXED = struct.Struct(">x10B")
_TLV_INT1 = struct.Struct(">HHB")
_TLV_INT2 = struct.Struct(">HHH")


def _by_value(enum_type: Any, value_map: dict[int, str]) -> dict[int, Any]:
    return {value: getattr(enum_type, name) for value, name in value_map.items()}


def _by_member(enum_type: Any, name_map: dict[str, int]) -> dict[int, int]:
    """Member's id() -> value. Enum members hash in Python code, too slow here; and since a member
    lives as long as its Enum, no other object can ever have its id."""
    return {id(getattr(enum_type, name)): value for name, value in name_map.items()}


_TON = _by_value(pdu_types.AddrTon, constants.addr_ton_value_map)
_TON_VALUE = _by_member(pdu_types.AddrTon, constants.addr_ton_name_map)
_NPI = _by_value(pdu_types.AddrNpi, constants.addr_npi_value_map)
_NPI_VALUE = _by_member(pdu_types.AddrNpi, constants.addr_npi_name_map)
_PRIORITY = _by_value(pdu_types.PriorityFlag, constants.priority_flag_value_map)
_PRIORITY_VALUE = _by_member(pdu_types.PriorityFlag, constants.priority_flag_name_map)
_REPLACE = _by_value(pdu_types.ReplaceIfPresentFlag, constants.replace_if_present_flap_value_map)
_REPLACE_VALUE = _by_member(pdu_types.ReplaceIfPresentFlag, constants.replace_if_present_flap_name_map)
_MESSAGE_STATE = _by_value(pdu_types.MessageState, constants.message_state_value_map)
_MESSAGE_STATE_VALUE = _by_member(pdu_types.MessageState, constants.message_state_name_map)
_ESM_MODE_VALUE = _by_member(pdu_types.EsmClassMode, constants.esm_class_mode_name_map)
_ESM_TYPE_VALUE = _by_member(pdu_types.EsmClassType, constants.esm_class_type_name_map)
_ESM_FEATURE_VALUE = _by_member(pdu_types.EsmClassGsmFeatures, constants.esm_class_gsm_features_name_map)
_RECEIPT_VALUE = _by_member(
    pdu_types.RegisteredDeliveryReceipt, constants.registered_delivery_receipt_name_map
)
_ACK_VALUE = _by_member(
    pdu_types.RegisteredDeliverySmeOriginatedAcks, constants.registered_delivery_sme_originated_acks_name_map
)
_DEFAULT_CODING_VALUE = _by_member(pdu_types.DataCodingDefault, constants.data_coding_default_name_map)
_GSM_CODING_VALUE = _by_member(
    pdu_types.DataCodingGsmMsgCoding, constants.data_coding_gsm_message_coding_name_map
)
_GSM_CLASS_VALUE = _by_member(
    pdu_types.DataCodingGsmMsgClass, constants.data_coding_gsm_message_class_name_map
)
_GSM_SCHEME_VALUE: int = constants.data_coding_scheme_name_map["GSM_MESSAGE_CLASS"]
_RAW_SCHEME = pdu_types.DataCodingScheme.RAW
_DEFAULT_SCHEME = pdu_types.DataCodingScheme.DEFAULT
_GSM_SCHEME = pdu_types.DataCodingScheme.GSM_MESSAGE_CLASS
_EsmClass = pdu_types.EsmClass
_RegisteredDelivery = pdu_types.RegisteredDelivery
_DataCoding = pdu_types.DataCoding
_new_tuple = tuple.__new__

_STATUS: dict[int, Any] = {
    value: getattr(CommandStatus, entry["name"])
    for value, entry in constants.command_status_value_map.items()
    if value >= 0
}
_STATUS_VALUE: dict[int, int] = {
    id(getattr(CommandStatus, name)): value
    for name, value in constants.command_status_name_map.items()
    if value >= 0
}
_COMMAND_NAMES: dict[int, str] = {id(member): member.name for member in CommandId}
_STATUS_SMPP_EXTENSION = getattr(CommandStatus, constants.command_status_value_map[-1]["name"])
_STATUS_VENDOR_SPECIFIC = getattr(CommandStatus, constants.command_status_value_map[-2]["name"])
_STATUS_RESERVED = getattr(CommandStatus, constants.command_status_value_map[-3]["name"])
_STATUS_UNKNOWN = getattr(CommandStatus, constants.command_status_value_map[-4]["name"])


def _status_member(value: int) -> Any:
    """The CommandStatus the codec decodes ``value`` to, reserved ranges included."""
    member = _STATUS.get(value)
    if member is not None:
        return member
    if value < 256:
        return _STATUS_UNKNOWN
    if value <= 1023:
        return _STATUS_SMPP_EXTENSION
    if value <= 1279:
        return _STATUS_VENDOR_SPECIFIC
    return _STATUS_RESERVED


def _esm_class_table() -> list[tuple[Any, Any, tuple[Any, ...]] | None]:
    table: list[tuple[Any, Any, tuple[Any, ...]] | None] = []
    for value in range(256):
        mode = constants.esm_class_mode_value_map.get(value & 0x03)
        kind = constants.esm_class_type_value_map.get(value & 0x3C)
        if mode is None or kind is None:
            table.append(None)
            continue
        features = tuple(
            getattr(pdu_types.EsmClassGsmFeatures, name)
            for bit, name in constants.esm_class_gsm_features_value_map.items()
            if bit & value
        )
        table.append((getattr(pdu_types.EsmClassMode, mode), getattr(pdu_types.EsmClassType, kind), features))
    return table


def _registered_delivery_table() -> list[tuple[Any, tuple[Any, ...], bool] | None]:
    table: list[tuple[Any, tuple[Any, ...], bool] | None] = []
    for value in range(256):
        receipt = constants.registered_delivery_receipt_value_map.get(value & 0x03)
        if receipt is None:
            table.append(None)
            continue
        acks = tuple(
            getattr(pdu_types.RegisteredDeliverySmeOriginatedAcks, name)
            for bit, name in constants.registered_delivery_sme_originated_acks_value_map.items()
            if bit & value
        )
        table.append((getattr(pdu_types.RegisteredDeliveryReceipt, receipt), acks, bool(value & 0x10)))
    return table


def _data_coding_table() -> list[tuple[Any, Any]]:
    table: list[tuple[Any, Any]] = []
    for value in range(256):
        if value & 0xF0 == _GSM_SCHEME_VALUE:
            coding = constants.data_coding_gsm_message_coding_value_map[value & 0x04]
            klass = constants.data_coding_gsm_message_class_value_map[value & 0x03]
            data = pdu_types.DataCodingGsmMsg(
                getattr(pdu_types.DataCodingGsmMsgCoding, coding),
                getattr(pdu_types.DataCodingGsmMsgClass, klass),
            )
            table.append((_GSM_SCHEME, data))
        elif value in constants.data_coding_default_value_map:
            name = constants.data_coding_default_value_map[value]
            table.append((_DEFAULT_SCHEME, getattr(pdu_types.DataCodingDefault, name)))
        else:
            table.append((_RAW_SCHEME, value))
    return table


_ESM_CLASSES = _esm_class_table()
_REGISTERED_DELIVERIES = _registered_delivery_table()
_DATA_CODINGS = _data_coding_table()

_INT1, _INT2, _OCTETS, _CSTRING, _STATE = range(5)
_TLV_KINDS = {
    "user_message_reference": _INT2,
    "source_port": _INT2,
    "destination_port": _INT2,
    "sar_msg_ref_num": _INT2,
    "sar_total_segments": _INT1,
    "sar_segment_seqnum": _INT1,
    "message_payload": _OCTETS,
    "network_error_code": _OCTETS,
    "receipted_message_id": _CSTRING,
    "message_state": _STATE,
}
_RECEIPTED_MESSAGE_ID_SIZE = 65


def _tlvs(klass: Any) -> tuple[tuple[str, int, int], ...]:
    """(name, tag, kind) of the TLVs the fast path handles for ``klass``, in the codec's order."""
    return tuple(
        (name, constants.tag_name_map[name], _TLV_KINDS[name])
        for name in klass.optionalParams
        if name in _TLV_KINDS
    )


_ENCODE_TLVS = {klass: _tlvs(klass) for klass in (_SubmitSM, _DeliverSM)}
_DECODE_TLVS = {
    klass: {tag: (name, kind) for name, tag, kind in tlvs} for klass, tlvs in _ENCODE_TLVS.items()
}


# -- fast encoding


def _cstring(value: Any, size: int) -> bytes:
    if value is None:
        return b"\0"
    if type(value) is not bytes or len(value) >= size:
        raise _Unsupported
    return value + b"\0"


def _int(value: Any, top: int) -> int:
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= top:
        raise _Unsupported
    return value


def _address_type(ton: Any, npi: Any) -> bytes:
    """The NUL that ends the C-octet string before, then the TON and NPI octets."""
    return _ADDRESS_TYPE.pack(
        0 if ton is None else _TON_VALUE[id(ton)], 0 if npi is None else _NPI_VALUE[id(npi)]
    )


def _data_coding_value(coding: Any) -> int:
    scheme = coding.scheme
    data = coding.schemeData
    if scheme is _RAW_SCHEME and data is not None:
        return _int(data, 0xFF)
    if scheme is _DEFAULT_SCHEME:
        return _DEFAULT_CODING_VALUE[id(data)]
    if scheme is _GSM_SCHEME:
        return _GSM_SCHEME_VALUE | _GSM_CODING_VALUE[id(data.msgCoding)] | _GSM_CLASS_VALUE[id(data.msgClass)]
    raise _Unsupported


def _encode_tlv(tag: int, kind: int, value: Any) -> bytes:
    if kind == _INT2:
        return _TLV_INT2.pack(tag, 2, _int(value, 0xFFFF))
    if kind == _INT1:
        return _TLV_INT1.pack(tag, 1, _int(value, 0xFF))
    if kind == _OCTETS:
        if type(value) is not bytes or len(value) > 0xFFFF:
            raise _Unsupported
        return _TLV_HEAD.pack(tag, len(value)) + value
    if kind == _CSTRING:
        encoded = _cstring(value, _RECEIPTED_MESSAGE_ID_SIZE)
        return _TLV_HEAD.pack(tag, len(encoded)) + encoded
    return _TLV_INT1.pack(tag, 1, _MESSAGE_STATE_VALUE[id(value)])


def _registered_value(registered: Any) -> int:
    if type(registered) is not _RegisteredDelivery:
        raise _Unsupported
    receipt, acks, intermediate = registered
    delivery: int = _RECEIPT_VALUE[id(receipt)]
    for ack in acks:
        delivery |= _ACK_VALUE[id(ack)]
    return delivery | 0x10 if intermediate else delivery


def registered_delivery_of(pdu: Pdu) -> int:
    """The octet of a submit_sm's registered_delivery field (0 when it has none)."""
    registered = pdu.params.get("registered_delivery")
    if registered is None:
        return 0
    try:
        return _registered_value(registered)
    except _FALLBACK_ERRORS:  # a value the tables do not hold: the codec's own encoding
        return int(_registered_delivery.encode(registered)[0])


def _encode_sm(params: dict[str, Any], tlvs: tuple[tuple[str, int, int], ...]) -> bytes:
    (
        service_type, source_ton, source_npi, source_addr, dest_ton, dest_npi, destination_addr,
        esm_class, protocol_id, priority, schedule, validity, registered, replace, coding, default_msg_id,
        short_message,
    ) = _sm_fields(params)
    if schedule is not None or validity is not None:
        raise _Unsupported
    if service_type is None:
        service_type = b""
    elif type(service_type) is not bytes or len(service_type) > 5:
        raise _Unsupported
    if source_addr is None:
        source_addr = b""
    elif type(source_addr) is not bytes or len(source_addr) > 20:
        raise _Unsupported
    if destination_addr is None:
        destination_addr = b""
    elif type(destination_addr) is not bytes or len(destination_addr) > 20:
        raise _Unsupported
    if short_message is None:
        short_message = b""
    elif type(short_message) is not bytes or len(short_message) > 254:
        raise _Unsupported
    esm = 0
    if esm_class is not None:
        if type(esm_class) is not _EsmClass:
            raise _Unsupported
        mode, kind, features = esm_class
        esm = _ESM_MODE_VALUE[id(mode)] | _ESM_TYPE_VALUE[id(kind)]
        for feature in features:
            esm |= _ESM_FEATURE_VALUE[id(feature)]
    delivery = 0 if registered is None else _registered_value(registered)
    fixed = _SM_FIXED.pack(
        esm,
        _int(protocol_id, 0xFF),
        0 if priority is None else _PRIORITY_VALUE[id(priority)],
        0,
        0,
        delivery,
        0 if replace is None else _REPLACE_VALUE[id(replace)],
        0 if coding is None else _data_coding_value(coding),
        _int(default_msg_id, 254),
        len(short_message),
    )
    parts = [
        service_type,
        _address_type(source_ton, source_npi),
        source_addr,
        _address_type(dest_ton, dest_npi),
        destination_addr,
        fixed,
        short_message,
    ]
    if len(params) != _SM_MANDATORY:
        present = _SM_MANDATORY
        for name, tag, kind in tlvs:
            if name in params:
                parts.append(_encode_tlv(tag, kind, params[name]))
                present += 1
        if len(params) != present:
            raise _Unsupported
    return b"".join(parts)


def _fast_encode(pdu: Pdu) -> bytes | None:
    """The PDU's bytes as the codec encodes them, or None when the codec must encode it."""
    klass = type(pdu)
    command_id = _COMMAND_ID_VALUE.get(klass)
    if command_id is None:
        return None
    try:
        sequence = pdu.seqNum
        params = pdu.params
        if pdu.id is not klass.commandId or pdu.custom_tlvs or type(sequence) is not int:
            return None
        status = _STATUS_VALUE[id(pdu.status)]
        if klass is _SubmitSM or klass is _DeliverSM:
            body = _encode_sm(params, _ENCODE_TLVS[klass])
        elif klass is _SubmitSMResp:
            if status:
                body = b""
            elif len(params) == 1:
                body = _cstring(params["message_id"], 65)
            else:
                return None
        elif klass is _DeliverSMResp:
            if len(params) != 1 or params["message_id"] is not None:
                return None
            body = b"\0"
        elif params:
            return None
        else:
            body = b""
        return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body
    except _FALLBACK_ERRORS:
        return None


# -- fast decoding


def _decode_sm(data: bytes, tlvs: dict[int, tuple[str, int]]) -> dict[str, Any]:
    end = len(data)
    find = data.find
    start = HEADER_LEN
    nul = find(b"\0", start, end)
    if nul < 0 or nul - start > 5:
        raise _Unsupported
    service_type = data[start:nul]
    source_ton = _TON[data[nul + 1]]
    source_npi = _NPI[data[nul + 2]]
    start = nul + 3
    nul = find(b"\0", start, end)
    if nul < 0 or nul - start > 20:
        raise _Unsupported
    source_addr = data[start:nul]
    dest_ton = _TON[data[nul + 1]]
    dest_npi = _NPI[data[nul + 2]]
    start = nul + 3
    nul = find(b"\0", start, end)
    if nul < 0 or nul - start > 20:
        raise _Unsupported
    destination_addr = data[start:nul]
    start = nul + 11
    esm, protocol_id, priority, schedule, validity, registered, replace, coding, default_msg_id, sm_length = (
        data[nul + 1 : start]
    )
    if schedule or validity:
        raise _Unsupported
    offset = start + sm_length
    if offset > end:
        raise _Unsupported
    esm_class = _ESM_CLASSES[esm]
    delivery = _REGISTERED_DELIVERIES[registered]
    if esm_class is None or delivery is None:
        raise _Unsupported
    params = {
        "service_type": service_type,
        "source_addr_ton": source_ton,
        "source_addr_npi": source_npi,
        "source_addr": source_addr,
        "dest_addr_ton": dest_ton,
        "dest_addr_npi": dest_npi,
        "destination_addr": destination_addr,
        "esm_class": _new_tuple(_EsmClass, (esm_class[0], esm_class[1], set(esm_class[2]))),
        "protocol_id": protocol_id,
        "priority_flag": _PRIORITY[priority],
        "schedule_delivery_time": None,
        "validity_period": None,
        "registered_delivery": _new_tuple(_RegisteredDelivery, (delivery[0], set(delivery[1]), delivery[2])),
        "replace_if_present_flag": _REPLACE[replace],
        "data_coding": _DataCoding(*_DATA_CODINGS[coding]),
        "sm_default_msg_id": default_msg_id,
        "short_message": data[start:offset],
    }
    while offset < end:
        tag, size = _TLV_HEAD.unpack_from(data, offset)
        start = offset + 4
        offset = start + size
        if offset > end:
            raise _Unsupported
        name, kind = tlvs[tag]
        if kind == _INT2:
            if size != 2:
                raise _Unsupported
            params[name] = data[start] << 8 | data[start + 1]
        elif kind == _INT1:
            if size != 1:
                raise _Unsupported
            params[name] = data[start]
        elif kind == _OCTETS:
            params[name] = data[start:offset]
        elif kind == _CSTRING:
            if not 0 < size <= _RECEIPTED_MESSAGE_ID_SIZE or find(b"\0", start, offset) != offset - 1:
                raise _Unsupported
            params[name] = data[start : offset - 1]
        else:
            if size != 1:
                raise _Unsupported
            params[name] = _MESSAGE_STATE[data[start]]
    return params


def _fast_decode(data: bytes) -> Pdu | None:
    """The PDU the codec decodes from ``data``, or None when the codec must decode it."""
    if type(data) is not bytes or len(data) < HEADER_LEN:
        return None
    length, command_id, status, sequence = HEADER.unpack_from(data)
    klass = _FAST_CLASSES.get(command_id)
    if klass is None or length != len(data):
        return None
    params: dict[str, Any]
    try:
        if klass is _SubmitSM or klass is _DeliverSM:
            params = _decode_sm(data, _DECODE_TLVS[klass])
        elif klass is _SubmitSMResp and not status:
            nul = data.find(b"\0", HEADER_LEN)
            if nul < 0 or nul - HEADER_LEN > 64:
                return None
            params = {"message_id": data[HEADER_LEN:nul]}
        elif klass is _DeliverSMResp:
            if data[HEADER_LEN] != 0:
                return None
            params = {"message_id": None}
        else:
            params = {}
    except _FALLBACK_ERRORS:
        return None
    pdu = klass.__new__(klass)
    pdu.id = klass.commandId
    pdu.seqNum = sequence or None
    pdu.status = _status_member(status)
    pdu.custom_tlvs = []
    pdu.params = params
    return pdu
