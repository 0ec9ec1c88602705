"""The hand-written encoding and decoding of the hot PDUs against the smpp.pdu3 codec.

The codec is the reference: for every PDU the fast path takes, its bytes and objects must be the
codec's exactly, and every frame it does not take (or any malformed one) must still decode, or
fail with the same status, as through the codec.
"""

from __future__ import annotations

import datetime
import io
import string
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpp.pdu import constants, operations, pdu_types

from smsline.smpp import pdus

T = pdu_types

SEQUENCES = st.integers(0, 0xFFFF_FFFF)
ENCODABLE_STATUSES = st.sampled_from(
    [member for member in T.CommandStatus if constants.command_status_name_map[member.name] >= 0]
)
ERROR_STATUSES = ENCODABLE_STATUSES.filter(lambda member: member is not T.CommandStatus.ESME_ROK)


def members(enum_type: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(list(enum_type))


def maybe_none(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, st.none())


def c_octets(max_size: int) -> st.SearchStrategy[bytes]:
    """Values for C-octet strings: printable addresses, or any bytes but NUL."""
    text = st.text(alphabet=string.digits + string.ascii_letters + "+ ", max_size=max_size)
    octets = st.binary(max_size=max_size).map(lambda value: value.replace(b"\0", b"\x01"))
    return st.one_of(text.map(str.encode), octets)


def library_data_coding(value: int) -> Any:
    return pdus._data_coding.decode(io.BytesIO(bytes([value])))


DATA_CODINGS = st.one_of(
    st.sampled_from([0, 3, 8]).map(pdus.raw_data_coding),
    st.integers(0, 255).map(pdus.raw_data_coding),
    st.integers(0, 255).map(library_data_coding),
)
ESM_CLASSES = st.builds(
    T.EsmClass, members(T.EsmClassMode), members(T.EsmClassType), st.sets(members(T.EsmClassGsmFeatures))
)
REGISTERED_DELIVERIES = st.builds(
    T.RegisteredDelivery,
    members(T.RegisteredDeliveryReceipt),
    st.sets(members(T.RegisteredDeliverySmeOriginatedAcks)),
    st.booleans(),
)
MESSAGE_IDS = c_octets(64)

SUBMIT_TLVS: dict[str, st.SearchStrategy[Any]] = {
    "user_message_reference": st.integers(0, 0xFFFF),
    "source_port": st.integers(0, 0xFFFF),
    "destination_port": st.integers(0, 0xFFFF),
    "sar_msg_ref_num": st.integers(0, 0xFFFF),
    "sar_total_segments": st.integers(0, 255),
    "sar_segment_seqnum": st.integers(0, 255),
    "message_payload": st.binary(max_size=600),
}
DELIVER_TLVS: dict[str, st.SearchStrategy[Any]] = {
    **SUBMIT_TLVS,
    "network_error_code": st.binary(min_size=3, max_size=3),
    "receipted_message_id": MESSAGE_IDS,
    "message_state": members(T.MessageState),
}


@st.composite
def short_message_pdus(draw: st.DrawFn, klass: Any) -> Any:
    tlvs = SUBMIT_TLVS if klass is operations.SubmitSM else DELIVER_TLVS
    return klass(
        seqNum=draw(SEQUENCES),
        status=draw(st.one_of(st.just(T.CommandStatus.ESME_ROK), ENCODABLE_STATUSES)),
        service_type=draw(maybe_none(c_octets(5))),
        source_addr_ton=draw(maybe_none(members(T.AddrTon))),
        source_addr_npi=draw(maybe_none(members(T.AddrNpi))),
        source_addr=draw(maybe_none(c_octets(20))),
        dest_addr_ton=draw(members(T.AddrTon)),
        dest_addr_npi=draw(members(T.AddrNpi)),
        destination_addr=draw(c_octets(20)),
        esm_class=draw(maybe_none(ESM_CLASSES)),
        protocol_id=draw(maybe_none(st.integers(0, 255))),
        priority_flag=draw(maybe_none(members(T.PriorityFlag))),
        registered_delivery=draw(maybe_none(REGISTERED_DELIVERIES)),
        replace_if_present_flag=draw(maybe_none(members(T.ReplaceIfPresentFlag))),
        data_coding=draw(maybe_none(DATA_CODINGS)),
        sm_default_msg_id=draw(maybe_none(st.integers(0, 254))),
        short_message=draw(maybe_none(st.binary(max_size=254))),
        **draw(st.fixed_dictionaries({}, optional=tlvs)),
    )


@st.composite
def submit_sm_resps(draw: st.DrawFn) -> Any:
    sequence = draw(SEQUENCES)
    if draw(st.booleans()):
        return operations.SubmitSMResp(seqNum=sequence, message_id=draw(MESSAGE_IDS))
    return operations.SubmitSMResp(seqNum=sequence, status=draw(ERROR_STATUSES))


def bodiless(klass: Any) -> st.SearchStrategy[Any]:
    return st.builds(klass, seqNum=SEQUENCES, status=ENCODABLE_STATUSES)


HOT_PDUS = st.one_of(
    short_message_pdus(operations.SubmitSM),
    short_message_pdus(operations.DeliverSM),
    submit_sm_resps(),
    bodiless(operations.DeliverSMResp),
    bodiless(operations.EnquireLink),
    bodiless(operations.EnquireLinkResp),
    bodiless(operations.GenericNack),
)


def snapshot(pdu: Any) -> tuple[Any, ...]:
    return (type(pdu), pdu.id, pdu.seqNum, pdu.status, pdu.params, pdu.custom_tlvs, sorted(vars(pdu)))


def outcome(decoder: Any, frame: bytes) -> tuple[Any, ...]:
    try:
        return ("decoded", *snapshot(decoder(frame)))
    except pdus.PduError as exc:
        return ("error", exc.status, exc.sequence)


def assert_decodes_as_codec(frame: bytes) -> None:
    assert outcome(pdus.decode, frame) == outcome(pdus._codec_decode, frame)


def frame_of(command_id: int, body: bytes, *, status: int = 0, sequence: int = 7) -> bytes:
    return pdus.HEADER.pack(pdus.HEADER_LEN + len(body), command_id, status, sequence) + body


def sm_body(
    *,
    service_type: bytes = b"",
    ton: int = 1,
    npi: int = 1,
    source: bytes = b"79001234567",
    destination: bytes = b"79086228779",
    esm_class: int = 0,
    schedule: bytes = b"",
    registered_delivery: int = 1,
    data_coding: int = 0,
    short_message: bytes = b"hello",
    sm_length: int | None = None,
    tlvs: bytes = b"",
) -> bytes:
    return b"".join(
        [
            service_type + b"\0",
            bytes((ton, npi)),
            source + b"\0",
            bytes((1, 1)),
            destination + b"\0",
            bytes((esm_class, 0, 0)),
            schedule + b"\0",
            b"\0",
            bytes((registered_delivery, 0, data_coding, 0)),
            bytes((len(short_message) if sm_length is None else sm_length,)),
            short_message,
            tlvs,
        ]
    )


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


SUBMIT_SM = constants.command_id_name_map["submit_sm"]
DELIVER_SM = constants.command_id_name_map["deliver_sm"]
SUBMIT_SM_RESP = constants.command_id_name_map["submit_sm_resp"]
DELIVER_SM_RESP = constants.command_id_name_map["deliver_sm_resp"]
ENQUIRE_LINK = constants.command_id_name_map["enquire_link"]
GENERIC_NACK = constants.command_id_name_map["generic_nack"]


# -- properties: the fast path is the codec -------------------------------------------------------


@settings(max_examples=400)
@given(HOT_PDUS)
def test_fast_encode_is_the_codec_byte_for_byte(pdu: Any) -> None:
    fast = pdus._fast_encode(pdu)
    assert fast is not None
    assert fast == pdus._codec_encode(pdu)
    assert pdus.encode(pdu) == fast


@settings(max_examples=400)
@given(HOT_PDUS)
def test_fast_decode_of_codec_bytes_is_the_codec_decode(pdu: Any) -> None:
    frame = pdus._codec_encode(pdu)
    fast = pdus._fast_decode(frame)
    assert fast is not None
    assert snapshot(fast) == snapshot(pdus._codec_decode(frame))
    assert snapshot(pdus.decode(frame)) == snapshot(fast)


@settings(max_examples=300)
@given(
    st.sampled_from([SUBMIT_SM_RESP, DELIVER_SM_RESP, ENQUIRE_LINK, GENERIC_NACK]),
    st.one_of(st.integers(0, 0x500), st.integers(0, 0xFFFF_FFFF)),
    SEQUENCES,
)
def test_any_header_status_and_sequence_decode_as_the_codec(
    command_id: int, status: int, sequence: int
) -> None:
    body = b"\0" if command_id == DELIVER_SM_RESP else b"42\0" if command_id == SUBMIT_SM_RESP else b""
    frame = frame_of(command_id, body, status=status, sequence=sequence)
    assert pdus._fast_decode(frame) is not None
    assert_decodes_as_codec(frame)


@settings(max_examples=300)
@given(
    st.sampled_from([SUBMIT_SM, DELIVER_SM]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_every_octet_value_of_the_flag_fields_decodes_as_the_codec(
    command_id: int, ton: int, npi: int, esm_class: int, registered_delivery: int, data_coding: int
) -> None:
    body = sm_body(
        ton=ton,
        npi=npi,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
    )
    assert_decodes_as_codec(frame_of(command_id, body))


TLV_TAGS = st.sampled_from(
    [constants.tag_name_map[name] for name in DELIVER_TLVS] + [0x0005, 0x0019, 0x0099, 0x1400, 0x0201]
)
TLV_VALUES = st.one_of(
    st.binary(max_size=4),
    st.binary(max_size=70),
    st.builds(lambda text, tail: text + b"\0" + tail, c_octets(66), st.binary(max_size=2)),
)


@settings(max_examples=400)
@given(st.sampled_from([SUBMIT_SM, DELIVER_SM]), st.lists(st.tuples(TLV_TAGS, TLV_VALUES), max_size=5))
def test_any_tlv_stream_decodes_as_the_codec(command_id: int, tlvs: list[tuple[int, bytes]]) -> None:
    body = sm_body(tlvs=b"".join(tlv(tag, value) for tag, value in tlvs))
    assert_decodes_as_codec(frame_of(command_id, body))


@settings(max_examples=500)
@given(HOT_PDUS, st.data())
def test_damaged_frames_decode_or_fail_as_through_the_codec(pdu: Any, data: st.DataObject) -> None:
    frame = bytearray(pdus._codec_encode(pdu))
    for _ in range(data.draw(st.integers(1, 3))):
        damage = data.draw(st.sampled_from(["byte", "truncate", "extend"]))
        if damage == "byte" and frame:
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
        elif damage == "truncate" and frame:
            del frame[data.draw(st.integers(0, len(frame))) :]
        elif damage == "extend":
            frame += data.draw(st.binary(min_size=1, max_size=12))
        if len(frame) >= 4 and data.draw(st.booleans()):
            frame[0:4] = len(frame).to_bytes(4, "big")
    assert_decodes_as_codec(bytes(frame))


# -- what smsline sends and receives takes the fast path ----------------------------------------


def smsline_pdus() -> list[Any]:
    request = operations.SubmitSM(seqNum=9)
    built = [
        pdus.submit_sm(
            source="Shop", source_ton=pdus.TON_ALPHANUMERIC, source_npi=pdus.NPI_UNKNOWN,
            destination="79001234567", data_coding=8, short_message="привет".encode("utf-16-be"),
        ),
        pdus.submit_sm(
            source="79086228779", source_ton=1, source_npi=1, destination="79001234567", data_coding=0,
            short_message=b"\x05\x00\x03\x01\x02\x01part", udhi=True, sar=pdus.Sar(7, 2, 1),
        ),
        pdus.submit_sm(
            source="79086228779", source_ton=1, source_npi=1, destination="79001234567", data_coding=3,
            short_message=b"", message_payload=b"x" * 500, registered_delivery=False,
        ),
        pdus.deliver_sm(
            source="79001234567", source_ton=1, destination="79086228779", data_coding=0,
            short_message=b"CLIENT info", user_message_reference=3,
        ),
        pdus.deliver_sm(
            source="79001234567", source_ton=1, destination="79086228779", data_coding=0,
            short_message=b"id:abc sub:001 dlvrd:001 stat:DELIVRD", receipt=True,
            receipted_message_id="abc", message_state=2,
        ),
        pdus.submit_sm_resp(request, message_id="5f1c2a"),
        pdus.submit_sm_resp(request, status=pdus.ESME_RTHROTTLED),
        pdus.deliver_sm_resp(request),
        pdus.deliver_sm_resp(request, status=pdus.ESME_RX_T_APPN),
        pdus.enquire_link(),
        pdus.enquire_link_resp(request),
        pdus.generic_nack(0, pdus.ESME_RINVCMDLEN),
        pdus.generic_nack(12, pdus.ESME_RINVCMDID),
    ]
    for sequence, pdu in enumerate(built, start=1):
        if pdu.seqNum is None:
            pdu.seqNum = sequence
    return built


@pytest.mark.parametrize("pdu", smsline_pdus(), ids=lambda pdu: pdus.command_name(pdu))
def test_smsline_pdus_take_the_fast_path_both_ways(pdu: Any) -> None:
    fast = pdus._fast_encode(pdu)
    assert fast is not None
    assert fast == pdus._codec_encode(pdu)
    decoded = pdus._fast_decode(fast)
    assert decoded is not None
    assert snapshot(decoded) == snapshot(pdus._codec_decode(fast))


def test_generic_nack_with_sequence_zero_keeps_it() -> None:
    data = pdus.encode(pdus.generic_nack(0, pdus.ESME_RINVCMDLEN))
    assert data == frame_of(GENERIC_NACK, b"", status=pdus.ESME_RINVCMDLEN, sequence=0)
    assert pdus.decode(data).seqNum is None  # as the codec decodes sequence 0


def test_decoded_objects_are_not_shared_between_pdus() -> None:
    frame = pdus.encode(smsline_pdus()[1])
    first, second = pdus.decode(frame), pdus.decode(frame)
    first.params["esm_class"].gsmFeatures.clear()
    manual_ack = T.RegisteredDeliverySmeOriginatedAcks.SME_MANUAL_ACK_REQUESTED
    first.params["registered_delivery"].smeOriginatedAcks.add(manual_ack)
    first.params["data_coding"].schemeData = 99
    assert pdus.has_udhi(second)
    assert second.params["registered_delivery"].smeOriginatedAcks == set()
    assert pdus.data_coding_of(second) == 0


# -- what falls back to the codec ----------------------------------------------------------------


def test_vendor_tlv_falls_back_and_is_dropped_as_by_the_codec() -> None:
    frame = frame_of(DELIVER_SM, sm_body(tlvs=tlv(0x1400, b"vendor") + tlv(0x0204, b"\0\5")))
    assert pdus._fast_decode(frame) is None
    pdu = pdus.decode(frame)
    assert pdu.params["user_message_reference"] == 5
    assert "vendor_specific_bypass" not in pdu.params
    assert_decodes_as_codec(frame)


@pytest.mark.parametrize(
    ("name", "command_id", "body", "status"),
    [
        ("tlv not allowed in submit_sm", SUBMIT_SM, sm_body(tlvs=tlv(0x001E, b"abc\0")), 0xC1),
        ("unknown tlv tag", SUBMIT_SM, sm_body(tlvs=tlv(0x0099, b"x")), 0xC0),
        ("tlv length not its type's", DELIVER_SM, sm_body(tlvs=tlv(0x020E, b"\1\2")), 0xC2),
        ("bad message_state", DELIVER_SM, sm_body(tlvs=tlv(0x0427, b"\x63")), 0xC4),
        ("truncated tlv", DELIVER_SM, sm_body(tlvs=tlv(0x0424, b"payload")[:-2]), 0xC4),
        ("service_type too long", SUBMIT_SM, sm_body(service_type=b"abcdefg"), 0x15),
        ("source_addr too long", SUBMIT_SM, sm_body(source=b"1" * 21), 0x0A),
        ("unknown ton", SUBMIT_SM, sm_body(ton=9), 0x48),
        ("unknown npi", SUBMIT_SM, sm_body(npi=2), 0x49),
        ("bad esm_class", SUBMIT_SM, sm_body(esm_class=0x0C), 0x43),
        ("bad registered_delivery", SUBMIT_SM, sm_body(registered_delivery=3), 0x07),
        ("short_message past the end", SUBMIT_SM, sm_body(sm_length=200), pdus.ESME_RINVMSGLEN),
        ("bad schedule time", SUBMIT_SM, sm_body(schedule=b"nonsense"), 0x61),
        ("scheduled deliver_sm", DELIVER_SM, sm_body(schedule=b"000001000000000R"), 0xFF),
        ("no body", SUBMIT_SM, b"", pdus.ESME_RINVMSGLEN),
        ("submit_sm_resp without message_id", SUBMIT_SM_RESP, b"", pdus.ESME_RINVMSGLEN),
        ("message_id too long", SUBMIT_SM_RESP, b"1" * 70 + b"\0", 0x0C),
        ("deliver_sm_resp with a message_id", DELIVER_SM_RESP, b"42\0", 0xFF),
    ],
)
def test_malformed_frames_fail_with_the_codecs_status(
    name: str, command_id: int, body: bytes, status: int
) -> None:
    frame = frame_of(command_id, body)
    with pytest.raises(pdus.PduError) as raised:
        pdus.decode(frame)
    assert (raised.value.status, raised.value.sequence) == (status, 7), name
    assert_decodes_as_codec(frame)


@pytest.mark.parametrize(
    "frame",
    [
        frame_of(SUBMIT_SM, sm_body(schedule=b"240101120000000+")),
        frame_of(SUBMIT_SM, sm_body())[:-1],
        frame_of(SUBMIT_SM, sm_body()) + b"\0\0",
        frame_of(ENQUIRE_LINK, b"padding"),
        frame_of(SUBMIT_SM_RESP, b"42\0padding"),
        frame_of(constants.command_id_name_map["unbind"], b""),
        b"\0\0\0\x10\0\0",
    ],
    ids=["scheduled", "short", "long", "enquire_link padding", "resp padding", "unbind", "cut header"],
)
def test_other_frames_decode_as_through_the_codec(frame: bytes) -> None:
    assert_decodes_as_codec(frame)


def test_a_bytearray_decodes_through_the_codec() -> None:
    frame = pdus.encode(smsline_pdus()[0])
    assert snapshot(pdus.decode(bytearray(frame))) == snapshot(pdus.decode(frame))  # type: ignore[arg-type]


def unusual_pdus() -> list[tuple[str, Any]]:
    def submit(**changes: Any) -> Any:
        pdu = smsline_pdus()[0]
        pdu.params.update(changes)
        return pdu

    with_custom_tlv = submit()
    with_custom_tlv.custom_tlvs = [(0x1401, None, "OctetString", b"v")]
    bound = pdus.bind("bind_transceiver", system_id="smsline", password="secret")
    bound.seqNum = 1
    no_sequence = pdus.enquire_link()
    return [
        ("custom tlv", with_custom_tlv),
        ("scheduled", submit(schedule_delivery_time=datetime.datetime(2030, 1, 2, 3, 4, 5))),
        ("str param", submit(source_addr="Shop")),
        ("unhandled tlv", submit(payload_type=T.PayloadType.DEFAULT)),
        ("enum of another type", submit(source_addr_ton=T.AddrNpi.UNKNOWN)),
        ("bool for an int", submit(protocol_id=True)),
        ("param the codec ignores", submit(receipted_message_id=b"x")),
        ("bytearray short_message", submit(short_message=bytearray(b"hi"))),
        ("vendor bypass", submit(vendor_specific_bypass=b"x")),
        ("bind", bound),
        ("no sequence", no_sequence),
    ]


@pytest.mark.parametrize(("name", "pdu"), unusual_pdus(), ids=[name for name, _ in unusual_pdus()])
def test_unusual_pdus_fall_back_to_the_codec(name: str, pdu: Any) -> None:
    assert pdus._fast_encode(pdu) is None, name
    assert pdus.encode(pdu) == pdus._codec_encode(pdu)


@pytest.mark.parametrize(
    ("name", "pdu"),
    [
        ("protocol_id over 255", operations.SubmitSM(seqNum=1, protocol_id=300)),
        ("sm_default_msg_id 255", operations.SubmitSM(seqNum=1, sm_default_msg_id=255)),
        ("source_addr too long", operations.SubmitSM(seqNum=1, source_addr=b"1" * 21)),
        ("short_message too long", operations.SubmitSM(seqNum=1, short_message=b"x" * 255)),
        ("message_id on deliver_sm_resp", operations.DeliverSMResp(seqNum=1, message_id=b"42")),
        ("sequence too large", operations.EnquireLink(seqNum=1 << 32)),
        ("reserved status", operations.GenericNack(seqNum=1, status=T.CommandStatus.RESERVEDSTATUS)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_pdus_the_codec_refuses_are_still_refused(name: str, pdu: Any) -> None:
    assert pdus._fast_encode(pdu) is None, name
    with pytest.raises((ValueError, struct.error)):
        pdus._codec_encode(pdu)
    with pytest.raises((ValueError, struct.error)):
        pdus.encode(pdu)


# -- the dispatcher's submit_sm, encoded at once ---------------------------------------------------

ADDRESSES = st.one_of(
    st.text(alphabet=string.digits, max_size=24),
    st.text(alphabet=string.ascii_letters + string.digits + " +", max_size=12),
    st.text(max_size=12),  # anything, non-ASCII too: taken by the codec's path
)


@given(
    source=ADDRESSES,
    source_ton=st.sampled_from([0, 1, 5]),
    source_npi=st.sampled_from([0, 1]),
    destination=ADDRESSES,
    data_coding=st.sampled_from([0, 3, 8, 0xF0]),
    short_message=st.binary(max_size=260),
    udhi=st.booleans(),
    registered_delivery=st.booleans(),
    sar=st.none() | st.builds(pdus.Sar, st.integers(0, 0xFFFF), st.integers(1, 255), st.integers(1, 255)),
    message_payload=st.none() | st.binary(max_size=600),
    sequence=st.integers(1, 0x7FFF_FFFF),
)
def test_an_encoded_submit_sm_has_the_octets_of_the_codecs(sequence: int, **fields: Any) -> None:
    try:
        pdu = pdus.submit_sm(**fields)
        pdu.seqNum = sequence
        expected: bytes | type[Exception] = pdus.encode(pdu)
    except Exception as exc:  # the codec refuses it: so must the encoded one
        expected = type(exc)
    if isinstance(expected, bytes):
        encoded = pdus.submit_sm_encoded(**fields)
        encoded.seqNum = sequence
        assert pdus.encode(encoded) == expected
        assert pdus.command_name(encoded) == "submit_sm"
    else:
        with pytest.raises(expected):
            pdus.submit_sm_encoded(**fields)
