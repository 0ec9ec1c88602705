"""Signatures of status callbacks, and the per-token signing secrets they use.

A callback body is signed with HMAC-SHA256 under the signing secret of the API token that queued
the notification; the signature travels in the ``Smsline-Signature`` header as
``sha256=<hex>``. The signing secret of a token is derived from the service's secret key and the
token's public id, so no signing secret is stored anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "Smsline-Signature"
SIGNATURE_SCHEME: Final = "sha256="
SIGNING_SECRET_PREFIX: Final = "whsec_"
_DERIVATION_LABEL: Final = b"smsline callback signing secret v1\x00"


def signing_secret(service_key: bytes, token_public_id: str) -> str:
    """The signing secret of a token, as its holder is given it (``whsec_…``)."""
    if not service_key:
        raise ValueError("the service secret key is empty")
    digest = hmac.new(service_key, _DERIVATION_LABEL + token_public_id.encode(), hashlib.sha256).digest()
    return SIGNING_SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, body: bytes) -> str:
    """The ``Smsline-Signature`` header value for ``body``."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_SCHEME + mac


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
