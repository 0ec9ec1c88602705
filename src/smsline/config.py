"""Configuration: one TOML file (``SMSLINE_CONFIG``) plus ``SMSLINE_*`` environment variables.

Environment variables win over the file. Secrets (the SMSC password, the secret key) are
``SecretStr`` so they never print; they may also be read from a file named by
``SMSLINE_SMSC_PASSWORD_FILE`` / ``SMSLINE_SECRET_KEY_FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

IdBase = Literal["same", "resp_hex_receipt_dec", "resp_dec_receipt_hex"]
BindMode = Literal["transceiver", "transmitter_receiver"]
LongMessageMode = Literal["udh8", "udh16", "sar", "payload"]


class SmscSettings(BaseModel):
    """One SMPP bind to an operator's SMSC."""

    name: str = "smsc"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "smsline"
    password: SecretStr = SecretStr("")
    system_type: str = ""
    bind_mode: BindMode = "transceiver"
    window: int = Field(default=32, ge=1, le=1024)
    tps: float = Field(default=0.0, ge=0.0, description="submit_sm per second; 0 = unlimited")
    enquire_link_interval: float = Field(default=30.0, gt=0)
    response_timeout: float = Field(default=10.0, gt=0)
    reconnect_min: float = Field(default=0.5, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    id_base: IdBase = "same"
    long_messages: LongMessageMode = "udh8"


class Settings(BaseSettings):
    """Everything smsline reads from its configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SMSLINE_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str = "sqlite:///var/smsline.db"
    service_number: str = "+79086228779"
    sender: str = "SCSERV"
    support_phone: str = "+7 800 000-00-00"
    default_language: Literal["en", "ru"] = "en"
    default_timezone: str = "Europe/Moscow"
    default_region: str = "RU"

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Serve the HTTP side (API, health, metrics) from a second process of its own, so that the
    # API and the SMPP side run on two cores (api/process.py).
    api_process: bool = False

    # A single SMSC may be configured with the flat SMSLINE_SMSC_* variables; several with the
    # [[smsc]] tables of the TOML file. None at all: `serve` starts the built-in simulator.
    smsc_host: str | None = None
    smsc_port: int = 2775
    smsc_system_id: str = "smsline"
    smsc_password: SecretStr = SecretStr("")
    smsc: list[SmscSettings] = Field(default_factory=list)

    simulator_host: str = "127.0.0.1"
    simulator_port: int = 2775
    simulator_http_port: int = 2776
    simulator_receipt_delay: float = 0.0
    # The simulator keeps about this many of its newest records of each kind (for its HTTP API).
    simulator_keep: int = Field(default=100_000, ge=1)

    # Abuse limits per MSISDN (SPEC §1.6).
    limit_info_per_hour: int = 3
    limit_info_per_day: int = 10
    limit_any_per_day: int = 20

    # Sending: a message that keeps failing with temporary errors is retried after
    # send_retry_delay seconds, doubling each time (at most 5 minutes), until it has had
    # send_max_attempts attempts or is older than send_validity_seconds; then it is failed.
    send_max_attempts: int = Field(default=5, ge=1)
    send_retry_delay: float = Field(default=5.0, gt=0)
    send_validity_seconds: float = Field(default=86_400.0, gt=0)
    # A bind answered ESME_RTHROTTLED / ESME_RMSGQFUL pauses for throttle_pause seconds, doubling
    # while the SMSC keeps throttling (at most throttle_pause_max), and resets on a success.
    throttle_pause: float = Field(default=0.1, gt=0)
    throttle_pause_max: float = Field(default=10.0, gt=0)

    password_ttl_hours: float = 24.0
    duplicate_window_seconds: float = 600.0
    multipart_timeout_seconds: float = 600.0

    # Notifications API (SPEC §3).
    secret_key: SecretStr = SecretStr("")  # derives the callback signing secrets of API tokens
    api_rate_limit: float = Field(default=100.0, gt=0, description="requests per second per token")
    api_rate_burst: int = Field(default=200, ge=1)
    portal_attempts_per_minute: int = Field(default=10, ge=1)
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    callback_retry_seconds: float = Field(default=10.0, gt=0, description="first retry delay")
    callback_retry_hours: float = Field(default=24.0, gt=0)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        path = os.environ.get("SMSLINE_SMSC_PASSWORD_FILE")
        if path and isinstance(data, dict) and not data.get("smsc_password"):
            data["smsc_password"] = Path(path).read_text(encoding="utf-8").strip()
        key_path = os.environ.get("SMSLINE_SECRET_KEY_FILE")
        if key_path and isinstance(data, dict) and not data.get("secret_key"):
            data["secret_key"] = Path(key_path).read_text(encoding="utf-8").strip()
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get("SMSLINE_CONFIG")
        if config_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))
        return tuple(sources)

    def secret_values(self) -> list[str]:
        """Every secret the settings hold, for the log filter that redacts them."""
        return [self.smsc_password.get_secret_value(), self.secret_key.get_secret_value()] + [
            b.password.get_secret_value() for b in self.smsc
        ]

    def smsc_binds(self) -> list[SmscSettings]:
        """The configured SMSC binds; empty means "run on the built-in simulator"."""
        if self.smsc:
            return list(self.smsc)
        if self.smsc_host:
            return [
                SmscSettings(
                    host=self.smsc_host,
                    port=self.smsc_port,
                    system_id=self.smsc_system_id,
                    password=self.smsc_password,
                )
            ]
        return []


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the TOML file, with explicit overrides on top."""
    return Settings(**overrides)
