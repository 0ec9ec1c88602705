"""Bearer tokens, scopes, revocation and the per-token rate limit."""

from __future__ import annotations

from typing import Any

import pytest

from smsline.api.context import TOKEN_CACHE_SECONDS
from smsline.notify.tokens import revoke_token
from tests.api.conftest import Api, problem_of


async def test_no_token_or_a_wrong_one_is_401(api: Api) -> None:
    missing = await api.client.get("/api/v1/messages/1")
    made_up = await api.client.get("/api/v1/messages/1", headers=api.auth("sml_0123456789ab_" + "x" * 43))
    garbage = await api.client.get("/api/v1/messages/1", headers={"Authorization": "Bearer nonsense"})

    for response in (missing, made_up, garbage):
        assert response.status_code == 401
        assert problem_of(response)["type"] == "/api/problems/unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_without_the_scope_is_403(api: Api) -> None:
    reader = await api.token("messages:read")

    response = await api.client.put(
        "/api/v1/customers/C-1",
        json={"phone": "+79161234567", "personal_code": "1", "login": "x"},
        headers=api.auth(reader),
    )

    assert response.status_code == 403
    problem = problem_of(response)
    assert problem["type"] == "/api/problems/forbidden"
    assert "customers:write" in problem["detail"]


async def test_a_revoked_token_stops_working(api: Api) -> None:
    token = await api.token("messages:read", name="billing")
    assert (await api.client.get("/api/v1/messages/1", headers=api.auth(token))).status_code == 404

    assert await api.db.run(lambda conn: revoke_token(conn, "billing"))
    api.clock.advance(TOKEN_CACHE_SECONDS + 0.1)

    response = await api.client.get("/api/v1/messages/1", headers=api.auth(token))
    assert response.status_code == 401


@pytest.fixture
def api_overrides() -> dict[str, Any]:
    return {"api_rate_limit": 2.0, "api_rate_burst": 3}


async def test_over_the_rate_limit_is_429_with_retry_after(api: Api) -> None:
    token = await api.token("messages:read")
    fast = await api.token("messages:read", rate_limit=50)

    codes = [
        (await api.client.get("/api/v1/messages/1", headers=api.auth(token))).status_code for _ in range(4)
    ]
    limited = await api.client.get("/api/v1/messages/1", headers=api.auth(token))

    assert codes == [404, 404, 404, 429]
    assert limited.status_code == 429
    assert problem_of(limited)["type"] == "/api/problems/rate-limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another token has its own budget (and here a higher limit of its own).
    fast_codes = {
        (await api.client.get("/api/v1/messages/1", headers=api.auth(fast))).status_code for _ in range(20)
    }
    assert fast_codes == {404}
    # Time refills the bucket.
    api.clock.advance(1.0)
    assert (await api.client.get("/api/v1/messages/1", headers=api.auth(token))).status_code == 404
