"""API token form, scopes and hash."""

from __future__ import annotations

import pytest

from smsline.domain.tokens import make_token, public_id_of, token_hash, unknown_scopes


def test_a_token_carries_its_public_id() -> None:
    token = make_token("0123456789ab", "s" * 43)
    assert token == "sml_0123456789ab_" + "s" * 43
    assert public_id_of(token) == "0123456789ab"
    assert public_id_of("Bearer " + token) is None
    assert public_id_of("sml_0123456789ab_short") is None


def test_malformed_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        make_token("XYZ", "s" * 43)


def test_the_hash_is_sha256_hex_and_not_the_token() -> None:
    token = make_token("0123456789ab", "s" * 43)
    digest = token_hash(token)
    assert len(digest) == 64
    assert token not in digest
    assert digest != token_hash(token + "x")


def test_unknown_scopes_are_named() -> None:
    assert unknown_scopes(["notifications:send", "admin", "messages:read"]) == ["admin"]
