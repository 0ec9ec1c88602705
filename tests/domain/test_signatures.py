"""Callback signatures and the derivation of signing secrets."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from smsline.domain.signatures import sign, signing_secret, verify


def test_the_signature_is_hmac_sha256_of_the_body_as_documented() -> None:
    secret, body = "whsec_example", b'{"message_id":1,"status":"delivered"}'
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == f"sha256={expected}"


@given(st.binary(max_size=500), st.binary(min_size=1, max_size=20))
def test_a_signature_verifies_and_any_change_breaks_it(body: bytes, change: bytes) -> None:
    secret = "whsec_k"
    header = sign(secret, body)
    assert verify(secret, body, header)
    assert not verify(secret, body + change, header)
    assert not verify("whsec_other", body, header)


def test_signing_secrets_differ_per_token_and_per_service_key() -> None:
    a = signing_secret(b"service-key", "0123456789ab")
    assert a.startswith("whsec_")
    assert a == signing_secret(b"service-key", "0123456789ab")
    assert a != signing_secret(b"service-key", "0123456789ac")
    assert a != signing_secret(b"other-key", "0123456789ab")
