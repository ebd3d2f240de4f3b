"""The ``/v1`` endpoints: submit, list, read and delete jobs, verify one address.

Which token sees which job, and the quotas: :mod:`mailsift.api.access`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from mailsift.api.access import (
    daily_quota,
    not_found,
    owner_of_request,
    request_is_admin,
    require_job,
    take_quota,
)
from mailsift.api.errors import STREAMING, ApiError
from mailsift.api.inputs import check_emails
from mailsift.api.state import STATE, ApiState
from mailsift.api.uploads import (
    UPLOAD_TYPES,
    UploadRefused,
    UploadRow,
    inspect_upload,
    spool,
    upload_rows,
)
from mailsift.api.webhooks import WebhookRefused, check_webhook_url
from mailsift.inputs import InputError
from mailsift.results import (
    VERDICT_LIST,
    VERDICTS,
    merged_columns,
    merged_row,
    result_row,
    write_rows,
)
from mailsift.vocabulary import (
    VOCABULARIES,
    check_vocabulary,
    vocabulary_columns,
    with_vocabulary,
)
from schemas.base import utc_now_iso
from sinks.postgres import PostgresSink

__all__ = ["submit_job", "list_jobs", "job_status", "job_results", "delete_job", "verify",
           "FORMATS", "MAX_VERIFY_TIMEOUT", "MAX_PAGE", "MAX_JOB_LIST"]

log = logging.getLogger("mailsift.api")

#: results formats and their media types
FORMATS = {"json": "application/json", "csv": "text/csv", "ndjson": "application/x-ndjson"}
#: most results one request returns (page with offset/limit)
MAX_PAGE = 10_000
#: the limit of a download (``?download=true``): every row
ALL_ROWS = 2**31 - 1
DEFAULT_PAGE = 1000
#: the longest /v1/verify may wait for a verdict, in seconds
MAX_VERIFY_TIMEOUT = 120.0
DEFAULT_VERIFY_TIMEOUT = 30.0
#: rows read from Postgres per chunk of a streamed results response
CHUNK = 1000
#: most jobs one GET /v1/jobs lists
MAX_JOB_LIST = 500

# --------------------------------------------------------------------------- helpers


def _invalid(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(422, code, message)


def only_params(request: web.Request, *names: str) -> None:
    """422 for a query parameter the endpoint does not know (a typo must not go unseen)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise _invalid(f"unknown query parameter(s): {', '.join(map(repr, unknown))}"
                       + (f"; known: {', '.join(names)}" if names else ""),
                       "invalid_parameter")


def job_id_of(request: web.Request) -> str:
    """The ``{job_id}`` of the path; ids that no job can have are simply not found."""
    job_id = request.match_info["job_id"]
    if len(job_id) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in job_id):
        raise ApiError(404, "not_found", "no such job")
    return job_id


async def _body(request: web.Request, *media_types: str) -> bytes:
    if request.content_type not in media_types:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be {' or '.join(media_types)}, "
                       f"got {request.content_type!r}")
    limit = request.app[STATE].settings.api_max_body
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"request body larger than {limit} bytes")
    return await request.read()  # aiohttp enforces client_max_size while reading (413)


def _json_object(body: bytes, fields: set[str]) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid(f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(map(repr, unknown))}")
    return data


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredVerdict:
    """A verdict row of Postgres, with the attributes ``result_row`` reads."""

    email: str
    normalized: str | None
    verdict: str
    reason: str
    temporary: bool
    evidence: dict[str, Any]
    checked_at: str
    score: int | None = None

    @classmethod
    def from_record(cls, r: Any) -> StoredVerdict:
        evidence = r["evidence"]
        if isinstance(evidence, str):
            evidence = json.loads(evidence)
        return cls(r["email"], r["normalized"], r["verdict"], r["reason"], r["temporary"],
                   evidence or {}, _iso(r["checked_at"]) or "", r["score"])


async def _submit(request: web.Request, emails: list[str], *, webhook: str | None = None,
                  job_id: str | None = None, wait_for_budget: bool = True) -> str:
    """Record the job for the API (webhook first: a job can complete at once), submit it,
    within the token's quota; the job is the token's."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import kafka_calls, new_job_id
    from streams.client import submit_job as produce

    state = request.app[STATE]
    owner = owner_of_request(request)
    job_id = job_id or new_job_id()
    async with daily_quota(request, len(emails)):
        await state.jobs.record(job_id, total=len(emails), submitted_at=utc_now_iso(),
                                webhook=webhook, owner=owner)
        with kafka_calls(state.settings):
            await produce(state.settings, emails, job_id=job_id, owner=owner,
                          wait_for_budget=wait_for_budget)
    state.metrics.jobs_submitted.inc()
    state.metrics.addresses_submitted.inc(len(emails))
    return job_id


# --------------------------------------------------------------------------- POST /v1/jobs


#: longest job name kept (``?name=``, the dashboard sends the file's name)
MAX_NAME = 200


def _name_param(request: web.Request) -> str | None:
    raw = request.query.get("name")
    if raw is None:
        return None
    name = "".join(c for c in raw if c.isprintable()).strip()[:MAX_NAME]
    return name or None


async def submit_job(request: web.Request) -> web.Response:
    """Submit a list: JSON ``{"emails": [...], "webhook": ...}``, a CSV upload or a text
    list (one address per line). 202 at once, with the job in state ``submitting``: the
    rows are stored and produced in the background (:mod:`mailsift.api.delivery`).
    Everything that can make the list unusable is checked before (a 4xx, nothing
    created)."""
    # delivery and streams.client load aiokafka (slow to import): only a submit needs them
    from mailsift.api.delivery import Accepted, deliver
    from streams.client import new_job_id

    state = request.app[STATE]
    settings = state.settings
    only_params(request, "column", "webhook", "wait_for_budget", "name")
    wait_for_budget = _bool_param(request, "wait_for_budget", True)  # a bad one is a 422
    name = _name_param(request)
    columns: list[str] | None = None
    email_cell = 0
    cleanup = None
    total: int | None
    if request.content_type == "application/json":
        body = await _body(request, "application/json")
        try:
            data = _json_object(body, {"emails", "webhook", "wait_for_budget"})
            if "emails" not in data:
                raise _invalid("missing field 'emails'")
            emails = check_emails(data["emails"])
        except InputError as exc:
            raise _invalid(str(exc)) from None
        webhook = data.get("webhook")
        if webhook is not None and not isinstance(webhook, str):
            raise _invalid("'webhook' must be a string (an https:// URL)")
        wait_for_budget = data.get("wait_for_budget", wait_for_budget)
        if not isinstance(wait_for_budget, bool):
            raise _invalid("'wait_for_budget' must be true or false")
        if not emails:
            raise _invalid("no addresses to verify", "empty_job")
        listed = [UploadRow(i, e, (e,)) for i, e in enumerate(emails, 1)]
        bound = total = len(listed)

        def rows() -> Iterator[UploadRow]:
            return iter(listed)
    elif request.content_type in UPLOAD_TYPES:
        webhook = request.query.get("webhook") or None
        kind = "csv" if request.content_type == "text/csv" else "text"
        try:
            path = await spool(request, settings.api_max_upload)
            try:
                plan = await asyncio.to_thread(
                    inspect_upload, path, kind, column=request.query.get("column"),
                    max_rows=settings.api_job_max_addresses)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        except UploadRefused as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        columns, email_cell, bound = plan.columns, plan.email_cell, plan.bound
        total = plan.bound if plan.exact else None

        def rows() -> Iterator[UploadRow]:
            return upload_rows(path, plan)

        def cleanup() -> None:
            path.unlink(missing_ok=True)
    else:
        raise ApiError(415, "unsupported_media_type",
                       "Content-Type must be application/json, text/csv or text/plain, "
                       f"got {request.content_type!r}")
    try:
        await _check_webhook(state, webhook)
        job_id = new_job_id()
        refund = await take_quota(request, bound)
        try:
            owner = owner_of_request(request)
            await state.jobs.record(job_id, total=total, submitted_at=utc_now_iso(),
                                    webhook=webhook, owner=owner, state="submitting",
                                    **({"name": name} if name else {}))
            await state.sink.record_upload(job_id, created_at=datetime.now(UTC), owner=owner,
                                           name=name, columns=columns, email_cell=email_cell)
        except BaseException:
            await refund(bound)
            raise
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise
    task = asyncio.create_task(deliver(state, Accepted(
        job_id, owner, rows, bound, refund, wait_for_budget=wait_for_budget,
        cleanup=cleanup)), name=f"submit-{job_id}")
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return web.json_response({"job_id": job_id, "status": "submitting", "total": total,
                              "name": name}, status=202,
                             headers={"Location": f"/v1/jobs/{job_id}"})


async def _check_webhook(state: ApiState, webhook: str | None) -> None:
    if webhook is None:
        return
    if not state.settings.webhook_secret:
        raise _invalid("webhooks are disabled on this server (MAILSIFT_WEBHOOK_SECRET "
                       "is not set)", "webhook_disabled")
    try:
        await check_webhook_url(webhook, state.settings, state.settings.webhook_allowed_networks)
    except WebhookRefused as exc:
        raise _invalid(str(exc), "webhook_refused") from None


# --------------------------------------------------------------------------- GET /v1/jobs


async def list_jobs(request: web.Request) -> web.Response:
    """The token's jobs (an admin token's: every job), newest first: Postgres, with the
    workers' progress (Redis) of those not completed there yet."""
    only_params(request, "limit")
    limit = _int_param(request, "limit", 50, 1, MAX_JOB_LIST)
    return web.json_response({"jobs": await jobs_of(request, limit)})


async def jobs_of(request: web.Request, limit: int) -> list[dict[str, Any]]:
    """The body of ``GET /v1/jobs`` (the dashboard lists them too)."""
    state = request.app[STATE]
    owner = None if request_is_admin(request) else owner_of_request(request)
    rows = await state.sink.list_jobs(owner=owner, limit=limit)
    running = [r["job_id"] for r in rows if r["completed_at"] is None]
    progress = dict(zip(running, await asyncio.gather(
        *(state.jobs.progress(job_id) for job_id in running)), strict=True))
    records = dict(zip(running, await asyncio.gather(
        *(state.jobs.get(job_id) for job_id in running)), strict=True))
    jobs = []
    for r in rows:
        p = progress.get(r["job_id"])
        record = records.get(r["job_id"], {})
        done_counts = _counts(r["counts"]) if p is None else dict(p.by_verdict)
        total = r["total"] if r["total"] is not None or p is None else p.total
        if total is None and record.get("total"):
            total = int(record["total"])
        jobs.append({
            "job_id": r["job_id"], "name": r["name"], "total": total,
            "done": (r["total"] or 0) if p is None else p.done,
            "created_at": _iso(r["created_at"]), "completed_at": _iso(r["completed_at"]),
            "status": _status(record, p is None or p.completed),
            "counts": done_counts or {}})
    return jobs


def _counts(raw: Any) -> dict[str, int] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): int(v) for k, v in dict(value).items()}


# --------------------------------------------------------------------------- DELETE /v1/jobs/{id}


async def _known_job(request: web.Request) -> tuple[str, Any, dict[str, str], dict[str, Any]]:
    """The path's job, visible to the request's token and known somewhere (else 404): its
    id, the workers' progress, the API's record and what Postgres stored."""
    state = request.app[STATE]
    job_id = job_id_of(request)
    only_params(request)
    await require_job(request, job_id)
    progress, record, summary = await asyncio.gather(
        state.jobs.progress(job_id), state.jobs.get(job_id), state.sink.job_summary(job_id))
    if not (record or progress.total is not None or progress.done
            or summary["total"] is not None or summary["stored"]):
        raise not_found(job_id)
    return job_id, progress, record, summary


async def delete_job(request: web.Request) -> web.Response:
    """Erase a job now (``mailsift.erasure``): 200 with what was removed."""
    # aiokafka is slow to import: only the handlers that talk to Kafka load it
    from mailsift.erasure import Eraser
    from streams.client import kafka_calls

    state = request.app[STATE]
    job_id, _progress, _record, _summary = await _known_job(request)
    eraser = Eraser(state.settings, store=state.jobs.store, registry=state.jobs,
                    outbox=state.outbox, sink=state.sink)
    with kafka_calls(state.settings):
        erasure = await eraser.erase(job_id)
    rows = erasure.rows
    return web.json_response({"job_id": job_id, "deleted": True,
                              "verdicts": rows.verdicts if rows else 0,
                              "redis_keys": erasure.redis_keys})


# --------------------------------------------------------------------------- GET /v1/jobs/{id}


async def job_status(request: web.Request) -> web.Response:
    """Progress of a job: Redis bookkeeping of the workers, plus what Postgres stored."""
    return web.json_response(await status_of(request))


async def status_of(request: web.Request) -> dict[str, Any]:
    """The body of ``GET /v1/jobs/{job_id}`` (the dashboard's job page shows it too)."""
    state = request.app[STATE]
    job_id, progress, record, summary = await _known_job(request)
    in_redis = progress.total is not None or progress.done > 0
    total = progress.total
    if total is None:
        total = summary["total"]
    if total is None and record.get("total"):
        total = int(record["total"])
    completed = progress.completed or summary["completed_at"] is not None
    status = _status(record, completed)
    webhook: dict[str, Any] | None = None
    if record.get("webhook"):
        # scheduled when the completion is seen; until then it waits for the job
        webhook = (await state.outbox.status(job_id)
                   or {"delivery_id": None, "state": "waiting", "attempts": 0,
                       "scheduled_at": None, "next_attempt_at": None, "delivered_at": None,
                       "log": []})
    reasons = [{"reason": k, "count": v} for k, v in summary["by_reason"].items()]
    return {
        "job_id": job_id,
        "name": record.get("name") or summary["name"],
        "status": status,
        "total": total,
        "done": progress.done if in_redis else summary["stored"],
        "duplicates": progress.duplicates,
        "counts": dict(progress.by_verdict) if in_redis else dict(summary["by_verdict"]),
        "stored": summary["stored"],
        "submitted_at": record.get("submitted_at"),
        "completed_at": _iso(summary["completed_at"]),
        "rows_read": int(record.get("stored", 0)),
        "submitted": int(record.get("submitted", 0)),
        "error": record.get("error"),
        "reasons": reasons[:TOP_REASONS],
        "webhook": webhook,
    }


#: reasons a job's status lists (most frequent first)
TOP_REASONS = 10


def _status(record: dict[str, str], completed: bool) -> str:
    """``submitting`` and ``failed`` (the API's record of an upload), else the workers'
    ``running`` or ``completed``."""
    if record.get("state") in {"submitting", "failed"}:
        return record["state"]
    return "completed" if completed else "running"


# --------------------------------------------------------------------------- GET …/results


def _vocabulary_param(request: web.Request) -> str:
    """``?vocabulary=`` (default ``mailsift``): whose status words the rows also carry."""
    try:
        return check_vocabulary(request.query.get("vocabulary", "mailsift"))
    except ValueError:
        raise _invalid(f"vocabulary must be one of {', '.join(VOCABULARIES)}, got "
                       f"{request.query['vocabulary']!r}", "invalid_parameter") from None


def _bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in {"true", "1", "yes"}:
        return True
    if raw.lower() in {"false", "0", "no"}:
        return False
    raise _invalid(f"{name} must be true or false, got {raw!r}", "invalid_parameter")


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise _invalid(f"{name} must be an integer from {lo} to {hi}, got {raw!r}",
                       "invalid_parameter")
    return value


def _verdicts_param(request: web.Request) -> list[str] | None:
    """``?verdict=deliverable,risky``: the rows of these verdicts only (None: all)."""
    raw = request.query.get("verdict")
    if raw is None:
        return None
    if not re.fullmatch(VERDICT_LIST, raw):
        raise _invalid(f"verdict: expected a comma list of {', '.join(VERDICTS)}, got {raw!r}",
                       "invalid_parameter")
    return sorted(set(raw.split(",")))


@dataclass(frozen=True)
class _Rows:
    """How a job's results are read: its upload's rows in input order (the input's
    columns first), or, for a job that did not come through the API, its verdicts."""

    upload: Any
    columns: list[str]
    rename: dict[str, str]
    vocabulary: str
    verdicts: list[str] | None

    async def count(self, sink: PostgresSink, job_id: str) -> int:
        if self.upload is None:
            return await sink.verdict_count(job_id, self.verdicts)
        return await sink.input_count(job_id, self.verdicts)

    async def fetch(self, sink: PostgresSink, job_id: str, *, limit: int, offset: int,
                    after: Any) -> list[Any]:
        if self.upload is None:
            return await sink.verdict_rows(job_id, limit=limit, offset=offset, after=after,
                                           verdicts=self.verdicts)
        return await sink.input_rows(job_id, limit=limit, offset=offset, after=after,
                                     verdicts=self.verdicts)

    def key(self, record: Any) -> Any:
        return record["address_key"] if self.upload is None else record["line"]

    def row(self, record: Any) -> dict[str, Any]:
        result = with_vocabulary(result_row(StoredVerdict.from_record(record)),
                                 self.vocabulary)
        if self.upload is None:
            return result
        cells = orjson.loads(record["cells"])
        result["email"] = cells[self.upload["email_cell"]].strip()  # as in this row
        first = record["first_line"]
        result["duplicate_of"] = "" if first == record["line"] else first
        original = dict(zip(self.upload["columns"], cells, strict=False)
                        ) if self.upload["columns"] else None
        return merged_row(original, result, self.rename)


async def job_results(request: web.Request) -> web.StreamResponse:
    """A page of a job's results from Postgres, streamed in chunks. A list submitted
    through the API comes back in its input order, every row (duplicates point at their
    address's first line), with a CSV's own columns first; other jobs by address."""
    state = request.app[STATE]
    job_id = job_id_of(request)
    only_params(request, "format", "offset", "limit", "vocabulary", "verdict", "download")
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise _invalid(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}",
                       "invalid_parameter")
    vocabulary = _vocabulary_param(request)
    verdicts = _verdicts_param(request)
    download = _bool_param(request, "download", False)
    offset = _int_param(request, "offset", 0, 0, 2**31 - 1)
    # a download is the whole file (streamed in chunks) unless a limit is asked for
    limit = _int_param(request, "limit", ALL_ROWS if download else DEFAULT_PAGE, 1, MAX_PAGE)
    await require_job(request, job_id)
    upload = await state.sink.job_upload(job_id)
    ours = vocabulary_columns(vocabulary)
    rename: dict[str, str]
    if upload is None:
        columns, rename = list(ours), {}
    else:
        columns, rename = merged_columns(list(upload["columns"] or []),
                                         [*ours, "duplicate_of"])
    source = _Rows(upload, columns, rename, vocabulary, verdicts)
    stored = await source.count(state.sink, job_id)
    if stored == 0 and upload is None:
        progress, record = await asyncio.gather(state.jobs.progress(job_id),
                                                state.jobs.get(job_id))
        if not record and progress.total is None and progress.done == 0:
            if await state.sink.job_total(job_id) is None:
                raise not_found(job_id)
    end = min(stored, offset + limit)
    next_offset = end if end < stored else None
    headers = {"Content-Type": FORMATS[fmt] + "; charset=utf-8", "X-Total-Count": str(stored)}
    if next_offset is not None:
        headers["X-Next-Offset"] = str(next_offset)
    if download:
        headers["Content-Disposition"] = (
            f'attachment; filename="{_download_name(job_id, verdicts, fmt)}"')
    resp = web.StreamResponse(status=200, headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    request[STREAMING] = True
    try:
        await _write_results(resp, state.sink, job_id, offset, limit, source, fmt, columns,
                             {"job_id": job_id, "offset": offset, "limit": limit,
                              "total": stored, "next_offset": next_offset})
    except ConnectionResetError:  # the client went away mid-download: nothing to answer
        log.info("results of job %s: the client closed the connection", job_id)
        return resp
    await resp.write_eof()
    return resp


async def _write_results(resp: web.StreamResponse, sink: PostgresSink, job_id: str, offset: int,
                         limit: int, source: _Rows, fmt: str, columns: list[str],
                         head: dict[str, Any]) -> None:
    """The body of :func:`job_results`, one chunk per page read from Postgres."""
    if fmt == "json":
        await resp.write(json.dumps(head)[:-1].encode() + b', "results": [')
    first = True
    async for rows in _pages(sink, job_id, offset, limit, source):
        buf = io.StringIO()
        if fmt == "json":
            buf.write(("" if first else ",")
                      + ",".join(json.dumps(r, ensure_ascii=False) for r in rows))
        elif fmt == "ndjson":
            write_rows(rows, "jsonl", buf)
        elif first:
            write_rows(rows, "csv", buf, columns)  # with the header row
        else:
            csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore").writerows(rows)
        first = False
        await resp.write(buf.getvalue().encode())
    if fmt == "json":
        await resp.write(b"]}")
    elif fmt == "csv" and first:
        buf = io.StringIO()
        write_rows([], "csv", buf, columns)  # an empty page still has its header
        await resp.write(buf.getvalue().encode())


def _download_name(job_id: str, verdicts: list[str] | None, fmt: str) -> str:
    """``mailsift-<job>[-deliverable].csv``: a file name that says what it holds."""
    ext = {"ndjson": "jsonl"}.get(fmt, fmt)
    which = "" if verdicts is None else "-" + "-".join(verdicts)
    return f"mailsift-{re.sub(r'[^A-Za-z0-9_.-]', '_', job_id)[:64]}{which}.{ext}"


async def _pages(sink: PostgresSink, job_id: str, offset: int, limit: int, source: _Rows
                 ) -> Any:
    """Result rows in chunks: the first by OFFSET, the next by keyset (after the last)."""
    remaining = limit
    last: Any = None
    while remaining > 0:
        n = min(CHUNK, remaining)
        records = await source.fetch(sink, job_id, limit=n, offset=offset, after=last)
        if not records:
            return
        yield [source.row(r) for r in records]
        last = source.key(records[-1])
        remaining -= len(records)
        if len(records) < n:
            return


# --------------------------------------------------------------------------- POST /v1/verify


async def verify(request: web.Request) -> web.Response:
    """Verify one address through the pipeline and wait for its verdict (or 504)."""
    state = request.app[STATE]
    only_params(request, "vocabulary")
    vocabulary = _vocabulary_param(request)
    data = _json_object(await _body(request, "application/json"), {"email", "timeout"})
    if "email" not in data:
        raise _invalid("missing field 'email'")
    if not isinstance(data["email"], str):
        raise _invalid("'email' must be a string")
    try:
        emails = check_emails([data["email"]])
    except InputError as exc:
        raise _invalid(str(exc).replace("emails[0]", "'email'")) from None
    timeout = data.get("timeout", DEFAULT_VERIFY_TIMEOUT)
    if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_VERIFY_TIMEOUT):
        raise _invalid(f"'timeout' must be a number of seconds above 0 and at most "
                       f"{MAX_VERIFY_TIMEOUT:g}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(timeout)
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import new_job_id

    job_id = new_job_id()
    followed = asyncio.create_task(_verdict_from_kafka(state, job_id))
    try:
        await asyncio.sleep(0)  # let the consumer start before the job is produced
        await _submit(request, emails, job_id=job_id)
        found = await _first_verdict(state, job_id, followed, deadline)
    finally:
        followed.cancel()
    if found is None:
        raise ApiError(504, "timeout",
                       f"no verdict within {timeout:g}s; poll GET /v1/jobs/{job_id}",
                       extra={"job_id": job_id})
    return web.json_response({"job_id": job_id, **with_vocabulary(result_row(found), vocabulary),
                              "temporary": found.temporary, "evidence": found.evidence})


async def _verdict_from_kafka(state: ApiState, job_id: str) -> Any:
    """The first verdict of ``job_id`` on the verdicts topic, from now on."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import follow

    async with contextlib.aclosing(follow(state.settings, job_id, from_beginning=False)
                                   ) as followed:  # its consumer closes when we return
        async for item in followed:
            if item.verdict is not None and item.verdict.replay_id is None:
                return item.verdict
    return None


async def _first_verdict(state: ApiState, job_id: str, followed: asyncio.Task[Any],
                         deadline: float) -> Any:
    """Whichever comes first: the verdict on Kafka, or its row in Postgres (polled each
    second, in case the consumer started after the verdict was produced)."""
    async def stored() -> Any:
        while True:
            await asyncio.sleep(1.0)
            record = await state.sink.first_verdict(job_id)
            if record is not None:
                return StoredVerdict.from_record(record)

    polled = asyncio.create_task(stored())
    pending: set[asyncio.Task[Any]] = {followed, polled}
    loop = asyncio.get_running_loop()
    try:
        while pending and loop.time() < deadline:
            done, pending = await asyncio.wait(pending, timeout=deadline - loop.time(),
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                if task.exception() is not None:
                    log.warning("verify %s: %s", job_id, task.exception())
                elif task.result() is not None:
                    return task.result()
        return None
    finally:
        polled.cancel()
