"""Phone numbers (MSISDN): normalisation to E.164 and the SMPP address form."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Final

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

TON_INTERNATIONAL: Final = 1

_WRITTEN_NUMBER: Final = re.compile(r"\+?[\d\s().\-/]+")
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_INTERNATIONAL_DIGITS: Final = re.compile(r"[1-9][0-9]{1,14}")
# A Russian number as people mostly write it: +7, 7 or the trunk prefix 8, then the ten digits of
# the national number (not starting with 0), perhaps spaced out with spaces, hyphens, parentheses.
_USUAL_RU: Final = re.compile(r"[ \t]*(?:\+7|7|8)([ ()\-]*[1-9](?:[ ()\-]*[0-9]){9})[ \t]*")
_SEPARATORS: Final = str.maketrans("", "", " ()-")


class InvalidMsisdn(ValueError):
    """A value that cannot be read as a phone number."""

    def __init__(self, raw: str, region: str | None = None, detail: str | None = None) -> None:
        self.raw = raw
        self.region = region
        where = f" for region {region}" if region else ""
        message = f"not a valid phone number{where}: {raw!r}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


def _valid(number: phonenumbers.PhoneNumber | None) -> bool:
    return number is not None and phonenumbers.is_valid_number(number)


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


_Desc = tuple[frozenset[int], re.Pattern[str]]


@functools.cache
def _russian_number_check() -> tuple[re.Pattern[str], Callable[[str], bool]] | None:
    """(the leading digits of Russian numbers, a validity check of such a national number).

    The check is the one ``phonenumbers.is_valid_number`` makes for a number of country code 7
    that belongs to RU — a number type other than unknown — but with the patterns of the
    library's metadata compiled once instead of looked up on every call.
    """
    metadata = PhoneMetadata.metadata_for_region("RU", None)
    if (
        metadata is None
        or metadata.leading_digits is None
        or phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(7, ("",))[0] != "RU"
    ):
        return None

    def compiled(desc: PhoneNumberDesc | None) -> _Desc | None:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)

    general = compiled(metadata.general_desc)
    if general is None:
        return None
    kinds = [
        kind
        for desc in (
            metadata.fixed_line,
            None if metadata.same_mobile_and_fixed_line_pattern else metadata.mobile,
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
        )
        if (kind := compiled(desc)) is not None
    ]

    def matches(desc: _Desc, national: str) -> bool:
        lengths, pattern = desc
        return (not lengths or len(national) in lengths) and pattern.fullmatch(national) is not None

    def valid(national: str) -> bool:
        return matches(general, national) and any(matches(kind, national) for kind in kinds)

    return re.compile(metadata.leading_digits), valid


def normalise_msisdn(raw: str, default_region: str = "RU") -> str:
    """Read a phone number as people write it and give it in E.164 form with '+'.

    A number without '+' is read in the default region first (``8 908 622 87 79``,
    ``79086228779``); when that is not a valid number there, it is read as international
    (``380501234567``, ``0044 20 7946 0958``).
    """
    if default_region == "RU" and (usual := _USUAL_RU.fullmatch(raw)) is not None:
        # Fast path for what bulk imports are mostly made of: phonenumbers reads each of these
        # forms as country code 7 with the ten digits as the national number, so when that
        # number is valid it is the answer (the tests check this against the full reading).
        national = usual.group(1).translate(_SEPARATORS)
        russian = _russian_number_check()
        if russian is not None and russian[0].match(national):
            valid = russian[1](national)
        else:
            number = phonenumbers.PhoneNumber(country_code=7, national_number=int(national))
            valid = phonenumbers.is_valid_number(number)
        if valid:
            return "+7" + national
    return _normalise_in_full(raw, default_region)


def _normalise_in_full(raw: str, default_region: str) -> str:
    """normalise_msisdn without its fast path."""
    written = unicodedata.normalize("NFKC", raw).strip()
    if not written:
        raise InvalidMsisdn(raw, default_region, "empty")
    if not _WRITTEN_NUMBER.fullmatch(written):
        raise InvalidMsisdn(raw, default_region, "contains characters that are not part of a phone number")
    number = _parse(written, default_region)
    if not _valid(number) and not written.startswith("+"):
        digits = "".join(char for char in written if char.isdigit())
        for international in (digits, digits[2:] if digits.startswith("00") else ""):
            if international:
                candidate = _parse("+" + international, None)
                if _valid(candidate):
                    number = candidate
                    break
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidMsisdn(raw, default_region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_smpp_address(e164: str) -> str:
    """The digits of an E.164 number without '+', for an address with TON 1 / NPI 1."""
    if not _E164.fullmatch(e164):
        raise InvalidMsisdn(e164, detail="expected E.164 such as +79086228779")
    return e164[1:]


@functools.lru_cache(maxsize=8192)  # the service number and regular customers come back often
def from_smpp_address(addr: str, ton: int, default_region: str = "RU") -> str:
    """The E.164 form of an inbound source address.

    With TON 1 (international) the SMSC vouches for the digits, so they are taken as they
    are when their length is possible for the country; other TONs are read like a number
    a person wrote.
    """
    if ton != TON_INTERNATIONAL:
        return normalise_msisdn(addr, default_region)
    digits = addr.strip().removeprefix("+")
    if not _INTERNATIONAL_DIGITS.fullmatch(digits):
        raise InvalidMsisdn(addr, detail="international address must be 2 to 15 digits")
    number = _parse("+" + digits, None)
    if number is None or not phonenumbers.is_possible_number(number):
        raise InvalidMsisdn(addr, detail="not a possible international number")
    return "+" + digits
