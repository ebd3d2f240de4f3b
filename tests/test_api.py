"""The HTTP API (``mailsift api``) against a private pipeline: one real worker, the
simulated world in a process, the shared local stack (Kafka, Redis, Postgres).

The app runs in-process on 127.0.0.1 (aiohttp's test server on a free port); so does the
webhook receiver. All tests of the module share one event loop, pipeline and app.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from mailsift.api.app import DISPATCHER, create_app
from mailsift.api.openapi import openapi_document
from mailsift.results import RESULT_COLUMNS
from mailsift.settings import Settings
from streams.topics import ensure_topics
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    pipeline_env,
    produce_raw,
    running_world,
    settings_for,
    with_env,
)

pytestmark = [pytest.mark.stack, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "test-" + uuid.uuid4().hex
ADMIN = "admin-" + uuid.uuid4().hex
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
OTHER_AUTH = {"Authorization": "Bearer other-token"}
SECRET = "whsec-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024
MAX_UPLOAD = 256 * 1024
JOB_MAX = 5000

JOB = ["alice@ok.test", "nobody@ok.test", "not an address", "Alice@OK.test",
       "bob@ok.test"]
#: final verdicts of JOB's unique addresses (Alice@OK.test is a duplicate of alice@ok.test)
JOB_VERDICTS = {"alice@ok.test": "deliverable", "nobody@ok.test": "undeliverable",
                "not an address": "undeliverable", "bob@ok.test": "deliverable"}


def api_env(**overrides: str) -> dict[str, str]:
    return {
        "MAILSIFT_API_TOKENS": f"other-token,{TOKEN}",
        "MAILSIFT_API_ADMIN_TOKENS": ADMIN,
        "MAILSIFT_API_RATE": "1000", "MAILSIFT_API_BURST": "1000",
        "MAILSIFT_API_MAX_BODY": str(MAX_BODY),
        "MAILSIFT_API_MAX_UPLOAD": str(MAX_UPLOAD),
        "MAILSIFT_API_JOB_MAX_ADDRESSES": str(JOB_MAX),
        "MAILSIFT_WEBHOOK_SECRET": SECRET,
        "MAILSIFT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        **overrides}


@pytest.fixture(scope="module")
def world() -> Iterator[WorldProcess]:
    with running_world("--greylist-seconds", "1") as w:
        yield w


@pytest.fixture(scope="module")
def pipeline(stack: Settings, world: WorldProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    env = pipeline_env(world)
    worker = WorkerProcess(env, tmp_path_factory.mktemp("api") / "worker.log")
    try:
        yield settings_for(env)
        assert worker.alive(), worker.log_text()[-3000:]
    finally:
        worker.stop()


@dataclass
class Api:
    app: web.Application
    server: TestServer
    http: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, path: str, *, auth: bool = True,
                   **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        async with self.http.request(method, self.url(path), headers=headers,
                                     **kwargs) as resp:
            text = await resp.text()
            body: Any = text
            if resp.content_type == "application/json":
                body = json.loads(text)
            return resp.status, body, resp


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(pipeline: Settings) -> AsyncIterator[Api]:
    app = create_app(with_env(pipeline, api_env(MAILSIFT_WEBHOOK_RETRY_DELAYS="0.2")),
                     dead_letter_interval=1.0)
    server = await _serve(app)
    http = aiohttp.ClientSession()
    try:
        await asyncio.wait_for(app[DISPATCHER].ready.wait(), 30)
        # one malformed submission: the worker dead-letters it, /metrics must count it
        names = await ensure_topics(pipeline)
        await produce_raw(pipeline, names.submissions, [(b"bad", b"not json")])
        yield Api(app, server, http)
    finally:
        await http.close()
        await server.close()


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records what it gets."""

    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        if len(self.calls) <= self.fail_first:
            return web.Response(status=503)
        self.got.set()
        return web.Response(status=204)


@pytest_asyncio.fixture(loop_scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver(fail_first=1)  # the first try fails: the delivery must retry
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await _serve(app)
    try:
        yield rec, str(server.make_url("/hook"))
    finally:
        await server.close()


async def wait_completed(api: Api, job_id: str, timeout: float = 90,
                         headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Until the job is completed; a job the API did not submit may be unknown (404) until
    a worker has seen it."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, body, _ = await api.call("GET", f"/v1/jobs/{job_id}", headers=headers or {})
        if status == 404 and headers is not None:
            await asyncio.sleep(0.3)
            continue
        assert status == 200, body
        if body["status"] == "completed" and body["stored"] >= sum(body["counts"].values()):
            return dict(body)
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {job_id} not completed after {timeout}s: {body}")


def _error(body: Any, code: str) -> None:
    assert isinstance(body, dict) and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# --------------------------------------------------------------------------- no pipeline needed


async def test_openapi_and_healthz_answer_without_a_token(api: Api) -> None:
    status, body, _ = await api.call("GET", "/openapi.json", auth=False)
    assert status == 200 and body == openapi_document()
    status, body, _ = await api.call("GET", "/healthz", auth=False)
    assert status == 200 and body == {"status": "ok"}, body
    status, body, _ = await api.call("GET", "/readyz", auth=False)
    assert status == 200, body
    assert body == {"status": "ok",
                    "services": {"kafka": "ok", "redis": "ok", "postgres": "ok"}}


async def test_missing_or_wrong_token_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer"}):
        for method, path in (("GET", "/v1/jobs/x"), ("POST", "/v1/jobs"), ("GET", "/metrics")):
            status, body, resp = await api.call(method, path, auth=False, headers=headers)
            assert status == 401, (headers, path, body)
            _error(body, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_job_and_route_are_404(api: Api) -> None:
    for path in (f"/v1/jobs/{uuid.uuid4().hex}", f"/v1/jobs/{uuid.uuid4().hex}/results",
                 "/v1/nothing"):
        status, body, _ = await api.call("GET", path)
        assert status == 404, (path, body)
        _error(body, "not_found")
    status, body, resp = await api.call("DELETE", "/v1/jobs")
    assert status == 405 and "POST" in resp.headers["Allow"]
    _error(body, "method_not_allowed")


async def test_bad_bodies(api: Api) -> None:
    async def post(data: Any, ctype: str = "application/json", path: str = "/v1/jobs"
                   ) -> tuple[int, Any]:
        status, body, _ = await api.call("POST", path, data=data,
                                         headers={"Content-Type": ctype})
        return status, body

    status, body = await post(b'{"emails": ["a@ok.test",')
    assert status == 400, body
    _error(body, "malformed_json")
    status, body = await post(b'{"emails": []}')
    assert status == 422, body
    _error(body, "empty_job")
    status, body = await post(b'{"emails": ["a@ok.test", 5]}')
    assert status == 422 and "emails[1]" in body["error"]["message"], body
    status, body = await post(b'["a@ok.test"]')
    assert status == 422, body
    status, body = await post(b"a@ok.test", "application/xml")
    assert status == 415, body
    _error(body, "unsupported_media_type")
    status, body = await post(b'{"email": "a@ok.test", "timeout": 0}', path="/v1/verify")
    assert status == 422, body
    status, body = await post(b"{", path="/v1/verify")
    assert status == 400, body


def _spooled() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mailsift-upload-*")}


async def test_bad_uploads_are_4xx_and_leave_nothing_behind(api: Api) -> None:
    """Binary, a wrong or missing column, no address, over a limit: a clear 4xx each, no
    job listed, no spool file left, no quota taken."""
    async def post(data: bytes, ctype: str = "text/csv", query: str = "") -> tuple[int, Any]:
        status, body, _ = await api.call("POST", "/v1/jobs" + query, data=data,
                                         headers={"Content-Type": ctype})
        return status, body

    _, before, _ = await api.call("GET", "/v1/jobs?limit=500")
    spooled = _spooled()
    cases: list[tuple[bytes, str, str, int, str, str]] = [
        (b"PK\x03\x04\x14\x00rest of a zip", "text/csv", "", 415, "not_a_list", "ZIP"),
        (b"email\nann@ok.test\x00\x01\x02\n", "text/csv", "", 415, "not_a_list", "NUL"),
        (b"name,address\nAnn,a@ok.test\n", "text/csv", "?column=mail", 422,
         "no_such_column", "no column 'mail' (columns: name, address)"),
        (b"name,notes\nAnn,x\nBob,y\n", "text/csv", "", 422, "no_such_column",
         "no address column found"),
        (b"", "text/csv", "", 422, "empty_job", "empty"),
        (b"name,email\nAnn,\nBob, \n", "text/csv", "", 422, "empty_job", "no row"),
        (b"\n# only a comment\n\n", "text/plain", "", 422, "empty_job", "no row"),
        (b"email\n" + b"".join(b"u%d@ok.test\n" % i for i in range(JOB_MAX + 1)),
         "text/csv", "", 413, "job_too_large", f"at most {JOB_MAX}"),
        (b"email\n" + b"a@ok.test\n" * (MAX_UPLOAD // 10), "text/csv", "", 413,
         "payload_too_large", "MAILSIFT_API_MAX_UPLOAD"),
    ]
    for data, ctype, query, code, error, words in cases:
        status, body = await post(data, ctype, query)
        assert status == code, (data[:40], body)
        _error(body, error)
        assert words in body["error"]["message"], body
    _, after, _ = await api.call("GET", "/v1/jobs?limit=500")
    assert _ids(after) == _ids(before)
    assert _spooled() == spooled
    # a column found by its values (no header names it), and a text list: both accepted
    status, body = await post(b"who,contact\nAnn,ann@ok.test\nBob,bob@ok.test\n")
    assert status == 202 and body["total"] == 2, body
    status, body = await post(b"ann@ok.test\n\n# a comment\nbob@ok.test\n", "text/plain")
    assert status == 202 and body["total"] == 2, body


async def test_body_over_the_limit_is_413(api: Api) -> None:
    big = json.dumps({"emails": [f"user{i}@ok.test" for i in range(MAX_BODY // 10)]}).encode()
    assert len(big) > MAX_BODY
    status, body, _ = await api.call("POST", "/v1/jobs", data=big,
                                     headers={"Content-Type": "application/json"})
    assert status == 413, body
    _error(body, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    status, body, _ = await api.call("POST", "/v1/jobs", data=chunks(),
                                     headers={"Content-Type": "application/json"})
    assert status == 413, body
    _error(body, "payload_too_large")


async def test_rate_limit_is_429_with_retry_after(pipeline: Settings, api: Api) -> None:
    app = create_app(with_env(pipeline, api_env(MAILSIFT_API_RATE="0.5",
                                                MAILSIFT_API_BURST="3")))
    server = await _serve(app)
    try:
        statuses = []
        for _ in range(4):
            async with api.http.get(server.make_url("/v1/jobs/none"), headers=AUTH) as resp:
                statuses.append(resp.status)
                body = await resp.json()
                retry_after = resp.headers.get("Retry-After")
        assert statuses == [404, 404, 404, 429], statuses
        _error(body, "rate_limited")
        assert retry_after is not None and 1 <= int(retry_after) <= 2
        # the bucket is per token: another token is not limited
        async with api.http.get(server.make_url("/v1/jobs/none"),
                                headers={"Authorization": "Bearer other-token"}) as resp:
            assert resp.status == 404
    finally:
        await server.close()


async def test_webhook_to_a_private_address_is_refused(api: Api) -> None:
    for url in ("http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/hook", "http://[::ffff:192.168.1.1]/x"):
        status, body, _ = await api.call("POST", "/v1/jobs",
                                         json={"emails": ["alice@ok.test"], "webhook": url})
        assert status == 422, (url, body)
        _error(body, "webhook_refused")
        assert "MAILSIFT_WEBHOOK_ALLOWED_NETWORKS" in body["error"]["message"]
    status, body, _ = await api.call("POST", "/v1/jobs",
                                     json={"emails": ["a@ok.test"], "webhook": "ftp://x.test/"})
    assert status == 422, body
    _error(body, "webhook_refused")


# --------------------------------------------------------------------------- through the pipeline


async def test_json_job_completes_with_results_and_a_signed_webhook(
        api: Api, receiver: tuple[Receiver, str]) -> None:
    rec, hook_url = receiver
    status, body, resp = await api.call("POST", "/v1/jobs",
                                        json={"emails": JOB, "webhook": hook_url})
    assert status == 202, body
    assert body["total"] == len(JOB)
    job_id = body["job_id"]
    assert resp.headers["Location"] == f"/v1/jobs/{job_id}"

    job = await wait_completed(api, job_id)
    assert job["total"] == len(JOB) and job["done"] == len(JOB)
    assert job["duplicates"] == 1 and job["stored"] == len(JOB_VERDICTS)
    assert job["counts"] == {"deliverable": 2, "undeliverable": 2}
    assert job["submitted_at"]

    # results: json pages, then csv and ndjson, all in the input's order, every row
    # (the duplicate points at its address's first line)
    status, page1, resp = await api.call("GET", f"/v1/jobs/{job_id}/results?limit=3")
    assert status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
    assert resp.headers["X-Total-Count"] == "5" and resp.headers["X-Next-Offset"] == "3"
    assert (page1["total"], page1["offset"], page1["limit"], page1["next_offset"]) == (5, 0, 3,
                                                                                       3)
    status, page2, resp = await api.call("GET",
                                         f"/v1/jobs/{job_id}/results?format=json&offset=3")
    assert status == 200 and page2["next_offset"] is None and "X-Next-Offset" not in resp.headers
    rows = page1["results"] + page2["results"]
    assert len(page1["results"]) == 3 and len(page2["results"]) == 2
    assert [r["email"] for r in rows] == JOB
    assert [r["duplicate_of"] for r in rows] == ["", "", "", 1, ""]
    assert {r["email"]: r["verdict"] for r in rows if not r["duplicate_of"]} == JOB_VERDICTS
    assert rows[3]["verdict"] == rows[0]["verdict"] and rows[3]["normalized"] == "alice@ok.test"
    assert all(list(r) == RESULT_COLUMNS + ["duplicate_of"] for r in rows)
    alice = rows[0]
    assert alice["reason"] == "ok" and alice["smtp_code"] == 250 and alice["spf"]

    status, text, resp = await api.call("GET", f"/v1/jobs/{job_id}/results?format=csv")
    assert status == 200 and resp.content_type == "text/csv"
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == RESULT_COLUMNS + ["duplicate_of"]
    assert [r["email"] for r in table] == JOB
    # ?verdict= keeps the rows of those verdicts, in the same order
    status, text, resp = await api.call(
        "GET", f"/v1/jobs/{job_id}/results?format=csv&verdict=deliverable&download=true")
    assert status == 200 and resp.headers["X-Total-Count"] == "3"
    assert resp.headers["Content-Disposition"] == (
        f'attachment; filename="mailsift-{job_id}-deliverable.csv"')
    assert [r["email"] for r in csv.DictReader(io.StringIO(text))] == [
        "alice@ok.test", "Alice@OK.test", "bob@ok.test"]
    status, body, _ = await api.call("GET", f"/v1/jobs/{job_id}/results?verdict=risky,unknown")
    assert status == 200 and body["total"] == 0 and body["results"] == []
    # the API's list is exact, as its OpenAPI pattern says (the CLI's --verdict folds case)
    status, body, _ = await api.call("GET", f"/v1/jobs/{job_id}/results?verdict=Risky")
    assert status == 422 and body["error"]["code"] == "invalid_parameter"

    status, text, resp = await api.call("GET",
                                        f"/v1/jobs/{job_id}/results?format=ndjson&offset=1"
                                        "&limit=2")
    assert status == 200 and resp.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == rows[1:3]

    for query in ("format=xml", "limit=0", "limit=10001", "offset=-1", "offset=x", "limt=5",
                  "vocabulary=briteverify", "verdict=good", "verdict=", "download=maybe"):
        status, body, _ = await api.call("GET", f"/v1/jobs/{job_id}/results?{query}")
        assert status == 422, (query, body)
        _error(body, "invalid_parameter")

    # the webhook: retried after a 503, then delivered, signed with the secret
    await asyncio.wait_for(rec.got.wait(), 30)
    assert len(rec.calls) == 2
    headers, raw = rec.calls[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Mailsift-Signature"], expected)
    assert abs(int(headers["X-Mailsift-Timestamp"]) - time.time()) < 120
    summary = json.loads(raw)
    assert summary["job_id"] == job_id and summary["total"] == len(JOB)
    assert summary["counts"] == {"deliverable": 2, "undeliverable": 2}
    assert summary["completed_at"]
    assert rec.calls[0][1] == raw  # the same body on every try
    assert rec.calls[0][0]["X-Mailsift-Delivery"] == headers["X-Mailsift-Delivery"]
    assert (rec.calls[0][0]["X-Mailsift-Attempt"], headers["X-Mailsift-Attempt"]) == ("1", "2")
    deadline = time.monotonic() + 10
    while True:  # the outcome is recorded just after the answer
        status, job, _ = await api.call("GET", f"/v1/jobs/{job_id}")
        if job["webhook"]["state"] == "delivered" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    webhook = job["webhook"]
    assert webhook["state"] == "delivered", webhook
    assert webhook["delivery_id"] == headers["X-Mailsift-Delivery"]
    assert [(e["attempt"], e["status"]) for e in webhook["log"]] == [(1, 503), (2, 204)]


async def test_csv_upload_completes(api: Api) -> None:
    upload = (b"name,Email,notes\nAnn,alice@ok.test,x\nNone,,blank is skipped\n"
              b"Full,full@ok.test,\nCat,someone@catchall.test,\nDup,ALICE@ok.test,again\n")
    status, body, _ = await api.call("POST", "/v1/jobs?column=email&name=Leads%20Q4", data=upload,
                                     headers={"Content-Type": "text/csv; charset=utf-8"})
    assert status == 202, body
    assert (body["total"], body["status"], body["name"]) == (4, "submitting", "Leads Q4")
    job = await wait_completed(api, body["job_id"])
    assert job["counts"] == {"deliverable": 1, "risky": 2} and job["duplicates"] == 1
    assert (job["name"], job["rows_read"], job["submitted"]) == ("Leads Q4", 4, 4)
    assert {r["reason"]: r["count"] for r in job["reasons"]} == {
        "ok": 1, "mailbox_full": 1, "catch_all": 1}
    status, text, _ = await api.call("GET", f"/v1/jobs/{body['job_id']}/results?format=csv")
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text)))
    # the input's columns first, in order, then ours (ours renamed where the input has it)
    assert list(table[0]) == ["name", "Email", "notes", "mailsift_email",
                              *RESULT_COLUMNS[1:], "duplicate_of"]
    got = [(r["name"], r["Email"], r["notes"], r["mailsift_email"], r["verdict"], r["reason"],
            r["duplicate_of"]) for r in table]
    assert got == [
        ("Ann", "alice@ok.test", "x", "alice@ok.test", "deliverable", "ok", ""),
        ("Full", "full@ok.test", "", "full@ok.test", "risky", "mailbox_full", ""),
        ("Cat", "someone@catchall.test", "", "someone@catchall.test", "risky", "catch_all", ""),
        ("Dup", "ALICE@ok.test", "again", "ALICE@ok.test", "deliverable", "ok", "2")]
    # in ZeroBounce's words: our columns, then its own (README, "Other verifiers' words")
    status, text, _ = await api.call(
        "GET", f"/v1/jobs/{body['job_id']}/results?format=csv&vocabulary=zerobounce"
        "&verdict=risky")
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == ["name", "Email", "notes", "mailsift_email", *RESULT_COLUMNS[1:],
                              "zerobounce_status", "zerobounce_sub_status", "duplicate_of"]
    words = {r["Email"]: (r["reason"], r["zerobounce_status"], r["zerobounce_sub_status"])
             for r in table}
    assert words == {"full@ok.test": ("mailbox_full", "invalid", "mailbox_quota_exceeded"),
                     "someone@catchall.test": ("catch_all", "catch-all", "")}


async def test_verify_returns_the_verdict_or_504_with_the_job(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/verify",
                                     json={"email": "bob@ok.test", "timeout": 60})
    assert status == 200, body
    assert (body["email"], body["verdict"], body["reason"]) == ("bob@ok.test", "deliverable",
                                                                "ok")
    assert body["temporary"] is False and body["evidence"]["smtp"]["reply"]["code"] == 250
    assert body["job_id"]
    # in Kickbox's words: our fields, then its own
    status, body, _ = await api.call("POST", "/v1/verify?vocabulary=kickbox",
                                     json={"email": "nobody@ok.test", "timeout": 60})
    assert status == 200, body
    assert (body["verdict"], body["kickbox_result"], body["kickbox_reason"],
            body["kickbox_accept_all"]) == ("undeliverable", "undeliverable", "rejected_email",
                                            False)
    # greylisted: the verdict comes only after a retry 1 s later, so 0.5 s is too short
    status, body, _ = await api.call("POST", "/v1/verify",
                                     json={"email": "carol@greylist.test", "timeout": 0.5})
    assert status == 504, body
    _error(body, "timeout")
    job_id = body["error"]["job_id"]
    job = await wait_completed(api, job_id)
    assert job["counts"] == {"deliverable": 1}


async def test_metrics(api: Api) -> None:
    status, text, resp = await api.call("GET", "/metrics")
    assert status == 200 and resp.content_type == "text/plain"
    assert ('mailsift_api_requests_total{method="POST",route="/v1/jobs",status="202"}'
            in text)
    assert 'route="/v1/jobs/{job_id}",status="200"' in text
    assert 'mailsift_api_request_duration_seconds_bucket{' in text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["mailsift_api_jobs_submitted_total"] >= 4
    assert values["mailsift_api_addresses_submitted_total"] >= len(JOB) + 3 + 2
    assert values['mailsift_stored_verdicts{verdict="deliverable"}'] >= 4
    assert values['mailsift_api_webhooks_total{outcome="delivered"}'] == 1
    # the malformed submission of the fixture, counted by the background scan
    deadline = time.monotonic() + 30
    while values["mailsift_dead_letter_records"] != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        _, text, _ = await api.call("GET", "/metrics")
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line and not line.startswith("#")}
    assert values["mailsift_dead_letter_records"] == 1


async def test_readyz_and_errors_are_503_when_services_are_down(pipeline: Settings,
                                                                 api: Api) -> None:
    down = dataclasses.replace(pipeline, kafka_broker="kafka://127.0.0.1:9",
                               redis_url="redis://127.0.0.1:9/0")
    app = create_app(with_env(down, api_env()))
    server = await _serve(app)
    try:
        async with api.http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 200  # alive all the same
        async with api.http.get(server.make_url("/readyz")) as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body["status"] == "unavailable"
        services = body["services"]
        assert services["postgres"] == "ok"
        assert services["kafka"].startswith("error") and services["redis"].startswith("error")
        async with api.http.get(server.make_url("/v1/jobs/x"), headers=AUTH) as resp:
            assert resp.status == 503
            _error(await resp.json(), "unavailable")
        async with api.http.post(server.make_url("/v1/jobs"), headers=AUTH,
                                 json={"emails": ["a@ok.test"]}) as resp:
            assert resp.status == 503
            _error(await resp.json(), "unavailable")
    finally:
        await server.close()



async def test_the_suppression_list_over_http(api: Api) -> None:
    """POST adds (all or none), GET lists, DELETE takes one off; the same list as
    `mailsift suppress` (the pipeline's own Redis prefix). Only an admin token manages it."""
    async def admin(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await api.call(method, path, headers=ADMIN_AUTH, **kwargs)
        return status, body

    status, body = await admin("POST", "/v1/suppressions",
                               json={"entries": ["Api-Sup.test", "jo@api-sup2.test",
                                                 "api-sup.test"]})
    assert (status, body) == (200, {"added": 2, "already": 0})
    status, body = await admin("POST", "/v1/suppressions",
                               json={"entries": ["api-sup3.test", "two words"]})
    assert status == 422 and body["error"]["code"] == "invalid_entry"
    assert "'two words' is neither a domain nor an address" in body["error"]["message"]
    status, body = await admin("POST", "/v1/suppressions", json={"entries": []})
    assert status == 422
    status, body = await admin("GET", "/v1/suppressions")
    assert status == 200
    listed = {(e["kind"], e["entry"]) for e in body["entries"]}
    assert {("domain", "api-sup.test"), ("address", "jo@api-sup2.test")} <= listed
    assert ("domain", "api-sup3.test") not in listed  # the refused POST added nothing
    # a token that is not an admin token: 403, and nothing changes
    for method, path, kwargs in (("GET", "/v1/suppressions", {}),
                                 ("POST", "/v1/suppressions", {"json": {"entries": ["x.test"]}}),
                                 ("DELETE", "/v1/suppressions/api-sup.test", {})):
        status, body, _ = await api.call(method, path, **kwargs)
        assert status == 403, (method, body)
        _error(body, "forbidden")
    status, body = await admin("DELETE", "/v1/suppressions/JO@api-sup2.test")
    assert (status, body) == (200, {"removed": "JO@api-sup2.test"})
    status, body = await admin("DELETE", "/v1/suppressions/jo@api-sup2.test")
    assert status == 404
    status, _, _ = await api.call("GET", "/v1/suppressions", auth=False)
    assert status == 401
    status, body = await admin("DELETE", "/v1/suppressions/api-sup.test")
    assert status == 200


def _ids(body: Any) -> set[str]:
    return {job["job_id"] for job in body["jobs"]}


async def _listed(api: Api, job_id: str, headers: dict[str, str], timeout: float = 30
                  ) -> dict[str, Any]:
    """GET /v1/jobs until ``job_id`` is in it (its created event reached Postgres)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = await api.call("GET", "/v1/jobs?limit=500", headers=headers)
        assert status == 200, body
        if job_id in _ids(body) or time.monotonic() > deadline:
            assert job_id in _ids(body), body
            return dict(body)
        await asyncio.sleep(0.3)


async def test_a_token_sees_lists_and_deletes_only_its_own_jobs(
        pipeline: Settings, api: Api) -> None:
    """#12: a job is its token's. Another token gets 404 for its status, results and
    DELETE, and does not list it; an admin token sees it, and also sees a job the CLI
    submitted (which no token owns). The owner's DELETE erases it: 404 from then on."""
    status, body, _ = await api.call("POST", "/v1/jobs",
                                     json={"emails": ["alice@ok.test", "bob@ok.test"]})
    assert status == 202, body
    job = body["job_id"]
    await wait_completed(api, job)
    for method, path in (("GET", f"/v1/jobs/{job}"), ("GET", f"/v1/jobs/{job}/results"),
                         ("DELETE", f"/v1/jobs/{job}")):
        status, body, _ = await api.call(method, path, headers=OTHER_AUTH)
        assert status == 404, (method, path, body)
        _error(body, "not_found")
    mine = await _listed(api, job, AUTH)
    entry = next(j for j in mine["jobs"] if j["job_id"] == job)
    assert (entry["total"], entry["done"], entry["status"]) == (2, 2, "completed")
    assert entry["counts"] == {"deliverable": 2} and entry["created_at"]
    status, theirs, _ = await api.call("GET", "/v1/jobs?limit=500", headers=OTHER_AUTH)
    assert status == 200 and job not in _ids(theirs)
    await _listed(api, job, ADMIN_AUTH)
    status, body, _ = await api.call("GET", f"/v1/jobs/{job}", headers=ADMIN_AUTH)
    assert status == 200 and body["status"] == "completed"

    # submitted by the CLI (or upstream): nobody's, so only an admin token sees it
    from streams.client import submit_job

    cli_job = await submit_job(pipeline, ["carol@ok.test"])
    await wait_completed(api, cli_job, headers=ADMIN_AUTH)
    status, body, _ = await api.call("GET", f"/v1/jobs/{cli_job}")
    assert status == 404, body
    status, mine, _ = await api.call("GET", "/v1/jobs?limit=500")
    assert cli_job not in _ids(mine)

    status, body, _ = await api.call("DELETE", f"/v1/jobs/{job}")
    assert status == 200, body
    assert body["job_id"] == job and body["deleted"] is True and body["verdicts"] == 2
    assert body["redis_keys"] > 0
    for headers in (AUTH, ADMIN_AUTH):
        for method, path in (("GET", f"/v1/jobs/{job}"), ("GET", f"/v1/jobs/{job}/results"),
                             ("DELETE", f"/v1/jobs/{job}")):
            status, body, _ = await api.call(method, path, headers=headers)
            assert status == 404, (headers, method, path, body)
    status, mine, _ = await api.call("GET", "/v1/jobs?limit=500")
    assert job not in _ids(mine)
    status, body, _ = await api.call("DELETE", f"/v1/jobs/{cli_job}", headers=ADMIN_AUTH)
    assert status == 200 and body["verdicts"] == 1


async def test_quotas_are_413_per_job_and_429_per_day(pipeline: Settings) -> None:
    """#12: at most MAILSIFT_API_JOB_MAX_ADDRESSES in one job (413, nothing submitted), and
    MAILSIFT_API_DAILY_ADDRESSES per token per day, jobs and /v1/verify together (429 with
    Retry-After until midnight UTC). Another token has its own quota; admin tokens none."""
    token, second = "quota-" + uuid.uuid4().hex, "quota2-" + uuid.uuid4().hex
    app = create_app(with_env(pipeline, api_env(
        MAILSIFT_API_TOKENS=f"{token},{second}", MAILSIFT_API_DAILY_ADDRESSES="5",
        MAILSIFT_API_JOB_MAX_ADDRESSES="4")), dead_letter_interval=60.0)
    server = await _serve(app)
    http = aiohttp.ClientSession()
    quota = Api(app, server, http)
    auth = {"Authorization": f"Bearer {token}"}

    def emails(n: int) -> dict[str, Any]:
        return {"emails": [f"user{i}@ok.test" for i in range(n)]}

    try:
        status, body, _ = await quota.call("POST", "/v1/jobs", headers=auth, json=emails(5))
        assert status == 413, body
        _error(body, "job_too_large")
        assert "MAILSIFT_API_JOB_MAX_ADDRESSES" in body["error"]["message"]
        csv_body = "email\n" + "\n".join(f"u{i}@ok.test" for i in range(5))
        status, body, _ = await quota.call("POST", "/v1/jobs", data=csv_body,
                                           headers={**auth, "Content-Type": "text/csv"})
        assert status == 413, body
        status, body, _ = await quota.call("POST", "/v1/jobs", headers=auth, json=emails(3))
        assert status == 202, body
        status, body, resp = await quota.call("POST", "/v1/jobs", headers=auth,
                                              json=emails(3))
        assert status == 429, body
        _error(body, "quota_exceeded")
        assert "2 left today" in body["error"]["message"]
        assert 1 <= int(resp.headers["Retry-After"]) <= 86_400
        status, body, _ = await quota.call("POST", "/v1/jobs", headers=auth, json=emails(2))
        assert status == 202, body
        status, body, _ = await quota.call("POST", "/v1/verify", headers=auth,
                                           json={"email": "alice@ok.test", "timeout": 1})
        assert status == 429, body
        status, body, _ = await quota.call(
            "POST", "/v1/jobs", headers={"Authorization": f"Bearer {second}"}, json=emails(4))
        assert status == 202, body
        status, body, _ = await quota.call("POST", "/v1/jobs", headers=ADMIN_AUTH,
                                           json=emails(4))
        assert status == 202, body
    finally:
        await http.close()
        await server.close()
