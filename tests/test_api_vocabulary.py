"""``?vocabulary=`` of the results and verify endpoints, in-process against a fake
Postgres pool (no services: the full API against the stack is tests/test_api.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mailsift.api import handlers
from mailsift.api.auth import PRINCIPAL, Principal
from mailsift.api.errors import error_middleware
from mailsift.api.state import STATE
from mailsift.results import RESULT_COLUMNS
from mailsift.settings import load_settings

AT = datetime(2026, 11, 25, 14, 0, 3, tzinfo=UTC)
RECORDS = [
    {"address_key": "a", "email": "info@catchall.test", "normalized": "info@catchall.test",
     "verdict": "risky", "reason": "catch_all", "temporary": False, "score": 60,
     "evidence": json.dumps({"flags": {"role": True}, "catch_all": True}), "checked_at": AT},
    {"address_key": "b", "email": "nobody@ok.test", "normalized": "nobody@ok.test",
     "verdict": "undeliverable", "reason": "mailbox_not_found", "temporary": False,
     "score": 0, "evidence": {"catch_all": False}, "checked_at": AT},
]


class FakeSink:
    """What job_results asks of the Postgres sink, answered from RECORDS."""

    async def job_upload(self, job_id: str) -> None:
        return None  # submitted by the CLI: results by address

    async def verdict_count(self, job_id: str, verdicts: Any = None) -> int:
        return len(RECORDS)

    async def verdict_rows(self, job_id: str, *, limit: int, offset: int = 0,
                           after: str | None = None, verdicts: Any = None
                           ) -> list[dict[str, Any]]:
        if after is None:
            return RECORDS[offset:offset + limit]
        return [r for r in RECORDS if r["address_key"] > after][:limit]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    @web.middleware
    async def as_admin(request: web.Request, handler: Any) -> web.StreamResponse:
        # an admin token sees every job (mailsift.api.access)
        request[PRINCIPAL] = Principal("tok_admin", admin=True)
        return await handler(request)

    app = web.Application(middlewares=[error_middleware, as_admin])
    app[STATE] = SimpleNamespace(  # type: ignore[misc]
        sink=FakeSink(), settings=load_settings({"MAILSIFT_API_ADMIN_TOKENS": "admin"},
                                                dotenv=False))
    app.router.add_get("/v1/jobs/{job_id}/results", handlers.job_results)
    app.router.add_post("/v1/verify", handlers.verify)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.asyncio
async def test_results_in_a_vocabulary(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/jobs/j1/results?vocabulary=zerobounce")
    assert resp.status == 200, await resp.text()
    rows = (await resp.json())["results"]
    assert [(r["reason"], r["zerobounce_status"], r["zerobounce_sub_status"]) for r in rows] \
        == [("catch_all", "do_not_mail", "role_based_catch_all"),
            ("mailbox_not_found", "invalid", "mailbox_not_found")]
    assert all(set(r) == set(RESULT_COLUMNS) | {"zerobounce_status", "zerobounce_sub_status"}
               for r in rows)

    resp = await client.get("/v1/jobs/j1/results?vocabulary=kickbox&format=csv&limit=1")
    table = list(csv.DictReader(io.StringIO(await resp.text())))
    assert list(table[0]) == RESULT_COLUMNS + ["kickbox_result", "kickbox_reason",
                                               "kickbox_accept_all"]
    assert (table[0]["kickbox_result"], table[0]["kickbox_reason"],
            table[0]["kickbox_accept_all"]) == ("risky", "low_deliverability", "True")

    resp = await client.get("/v1/jobs/j1/results?vocabulary=neverbounce&format=ndjson")
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [r["neverbounce_result"] for r in lines] == ["catchall", "invalid"]


@pytest.mark.asyncio
async def test_results_without_a_vocabulary_are_unchanged(client: TestClient[Any, Any]
                                                          ) -> None:
    for query in ("", "?vocabulary=mailsift"):
        resp = await client.get(f"/v1/jobs/j1/results{query}")
        rows = (await resp.json())["results"]
        assert all(list(r) == RESULT_COLUMNS for r in rows)
        resp = await client.get(f"/v1/jobs/j1/results{query}{'&' if query else '?'}format=csv")
        assert (await resp.text()).splitlines()[0] == ",".join(RESULT_COLUMNS)


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/jobs/j1/results"),
                                              ("POST", "/v1/verify")])
async def test_unknown_vocabulary_is_refused(client: TestClient[Any, Any], method: str,
                                             path: str) -> None:
    for value in ("briteverify", "Kickbox", ""):
        resp = await client.request(method, f"{path}?vocabulary={value}",
                                    json={"email": "a@ok.test"})
        assert resp.status == 422, (value, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_parameter"
        assert error["message"] == ("vocabulary must be one of mailsift, kickbox, zerobounce, "
                                    f"neverbounce, got {value!r}")
