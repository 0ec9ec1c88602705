"""Configuration from a TOML file and SMSLINE_* variables; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsline.config import load_settings
from smsline.db.engine import async_url


def test_toml_file_with_several_binds_and_environment_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "smsline.toml"
    config.write_text(
        """
service_number = "+79086228779"
http_port = 9000
limit_info_per_hour = 5

[[smsc]]
name = "a"
host = "smsc-a.example"
system_id = "scserv"
password = "pw-a"
window = 64
tps = 200

[[smsc]]
name = "b"
host = "smsc-b.example"
port = 2776
bind_mode = "transmitter_receiver"
id_base = "resp_hex_receipt_dec"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("SMSLINE_CONFIG", str(config))
    monkeypatch.setenv("SMSLINE_HTTP_PORT", "9100")
    settings = load_settings()
    assert settings.http_port == 9100  # the environment wins
    assert settings.limit_info_per_hour == 5
    binds = settings.smsc_binds()
    assert [(b.name, b.host, b.port, b.window) for b in binds] == [
        ("a", "smsc-a.example", 2775, 64),
        ("b", "smsc-b.example", 2776, 32),
    ]
    assert binds[1].bind_mode == "transmitter_receiver"
    assert binds[0].password.get_secret_value() == "pw-a"
    assert "pw-a" not in repr(settings)
    assert "pw-a" not in str(settings.model_dump())


def test_single_smsc_from_the_environment_and_password_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "smsc-password"
    secret.write_text("t0ps3cret\n", encoding="utf-8")
    monkeypatch.delenv("SMSLINE_CONFIG", raising=False)
    monkeypatch.setenv("SMSLINE_SMSC_HOST", "10.0.0.5")
    monkeypatch.setenv("SMSLINE_SMSC_PORT", "3000")
    monkeypatch.setenv("SMSLINE_SMSC_SYSTEM_ID", "scserv")
    monkeypatch.setenv("SMSLINE_SMSC_PASSWORD_FILE", str(secret))
    [bind] = load_settings().smsc_binds()
    assert (bind.host, bind.port, bind.system_id) == ("10.0.0.5", 3000, "scserv")
    assert bind.password.get_secret_value() == "t0ps3cret"
    assert "t0ps3cret" not in repr(bind)


def test_no_smsc_configured_means_the_built_in_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMSLINE_CONFIG", "SMSLINE_SMSC_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().smsc_binds() == []


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///var/smsline.db", "sqlite+aiosqlite"),
        ("postgresql://smsline@db/smsline", "postgresql+asyncpg"),
        ("postgres://smsline@db/smsline", "postgresql+asyncpg"),
    ],
)
def test_plain_database_urls_get_their_async_driver(url: str, driver: str) -> None:
    assert async_url(url).drivername == driver


def test_unsupported_database_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        async_url("mysql://root@localhost/smsline")
