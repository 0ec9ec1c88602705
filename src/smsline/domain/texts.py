"""Every SMS text smsline sends in reply to a request, in English and Russian."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

Language = Literal["en", "ru"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "ru")

PASSWORD_MASK: Final = "********"


def language_of(value: str | None) -> Language:
    """The reply language for a customer's language setting: Russian for "ru", else English."""
    if value is not None and value.strip().lower() == "ru":
        return "ru"
    return "en"


ACK_TEXT: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "en": ("Your request has been received. Wait for notification of the request being processed."),
        "ru": "Ваш запрос получен. Ожидайте уведомления о результате его обработки.",
    }
)

INFO_TEMPLATE: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "en": (
            "REGISTRATION CENTER.\n"
            "Personal Code: {personal_code}. "
            "CLIENT'S PORTAL: login: {login}, password: {password}. "
            "Do not share your registration data with anyone."
        ),
        "ru": (
            "РЕГИСТРАЦИОННЫЙ ЦЕНТР.\n"
            "Персональный код: {personal_code}. "
            "ЛИЧНЫЙ КАБИНЕТ КЛИЕНТА: логин: {login}, пароль: {password}. "
            "Никому не сообщайте свои регистрационные данные."
        ),
    }
)

SMS_STOPPED_TEXT: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "en": (
            "SMS notifications and mass texting are now off for your number. "
            "To turn them back on, send CLIENT sms start."
        ),
        "ru": (
            "SMS-уведомления и рассылки для вашего номера отключены. "
            "Чтобы снова их включить, отправьте CLIENT sms start."
        ),
    }
)

SMS_STARTED_TEXT: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "en": (
            "SMS notifications and mass texting are now on for your number. "
            "To turn them off, send CLIENT sms stop."
        ),
        "ru": (
            "SMS-уведомления и рассылки для вашего номера включены. "
            "Чтобы их отключить, отправьте CLIENT sms stop."
        ),
    }
)

NOT_REGISTERED_TEMPLATE: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "en": (
            "This phone number is not registered with us. Please call customer support at {support_phone}."
        ),
        "ru": (
            "Этот номер телефона у нас не зарегистрирован. "
            "Обратитесь в службу поддержки по телефону {support_phone}."
        ),
    }
)


def ack_text(lang: Language) -> str:
    """The acknowledgement sent as soon as a request is received."""
    return ACK_TEXT[lang]


def info_text(lang: Language, *, personal_code: str, login: str, password: str) -> str:
    """The reply to CLIENT info: the customer's registration data."""
    return INFO_TEMPLATE[lang].format(personal_code=personal_code, login=login, password=password)


def masked_info_text(lang: Language, *, personal_code: str, login: str) -> str:
    """The reply to CLIENT info as message history keeps it, with the password masked."""
    return info_text(lang, personal_code=personal_code, login=login, password=PASSWORD_MASK)


def sms_stopped_text(lang: Language) -> str:
    """The reply to CLIENT sms stop."""
    return SMS_STOPPED_TEXT[lang]


def sms_started_text(lang: Language) -> str:
    """The reply to CLIENT sms start."""
    return SMS_STARTED_TEXT[lang]


def not_registered_text(lang: Language, *, support_phone: str) -> str:
    """The reply to a request from a number that is not a registered customer."""
    return NOT_REGISTERED_TEMPLATE[lang].format(support_phone=support_phone)
