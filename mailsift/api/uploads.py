"""List uploads of ``POST /v1/jobs`` (and of the dashboard): a CSV file or a text list.

An upload is spooled to a temporary file as it arrives (``MAILSIFT_API_MAX_UPLOAD``
bytes at most), so a list of any length takes bounded memory. Before the API answers
202, :func:`inspect_upload` checks what can be checked cheaply and refuses the upload
with a clear 4xx (nothing created) when it is not a list:

* a binary file (NUL bytes, or a spreadsheet/archive signature);
* no address column: ``?column=`` names one that is not there, or none can be found
  (a header such as ``email``/``E-mail``/``email_address``, else the column whose sample
  values look like addresses, else a header-less file whose first row is an address);
* no address at all;
* more rows than ``MAILSIFT_API_JOB_MAX_ADDRESSES`` (counted exactly only when the line
  count says it may be over).

The rows themselves are read twice after that (:func:`upload_rows`): once to store them
with their keys, once to produce them.

>>> plan = plan_csv(["Name", "E-Mail"], [["Ann", "ann@example.com"]], column=None)
>>> plan.columns, plan.email_cell, plan.header
(['Name', 'E-Mail'], 1, True)
>>> plan_csv(["ann@example.com", "x"], [["bob@example.com", "y"]], column=None).columns
['column_1', 'column_2']
>>> plan_csv(["name"], [["Ann"]], column=None)
Traceback (most recent call last):
...
mailsift.api.uploads.UploadRefused: no address column found (columns: name); name it with ?column=
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from aiohttp import web

__all__ = ["UploadRefused", "UploadPlan", "UploadRow", "spool", "inspect_upload",
           "plan_csv", "upload_rows", "UPLOAD_TYPES"]

#: media types of a list upload: a CSV file, or one address per line
UPLOAD_TYPES = ("text/csv", "text/plain")
#: what is looked at to decide on the column and the binary check
SAMPLE_BYTES = 1 << 16
SAMPLE_ROWS = 50
#: a list of up to this many lines is counted before the 202 (~0.2 s): its total is
#: known at once; a longer one is counted while it is stored
COUNT_BEFORE_ANSWER = 200_000
_EMAIL_HEADERS = {"email", "emails", "emailaddress", "mail", "email1", "emailid",
                  "correo", "courriel", "adresse", "address"}
_SIGNATURES = {b"PK\x03\x04": "a ZIP archive (an .xlsx or .ods spreadsheet?)",
               b"\xd0\xcf\x11\xe0": "an Office document (.xls?)",
               b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip file"}


class UploadRefused(ValueError):
    """The upload is not a list we can verify: ``status`` and ``code`` of the 4xx."""

    def __init__(self, message: str, *, status: int = 422, code: str = "invalid_upload"
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class UploadPlan:
    """How to read an upload: its kind, a CSV's columns and where the address is."""

    kind: str                   # "csv" or "text"
    columns: list[str] | None   # a CSV's header (named column_N when it has none)
    email_cell: int             # the address's index in a row's cells
    header: bool                # the first row is a header, not data
    bound: int                  # at most this many rows
    exact: bool = False         # bound is the exact count of rows with an address


@dataclass(frozen=True)
class UploadRow:
    """One row of an upload: its line, the address as typed and the row's cells."""

    line: int
    email: str
    cells: Sequence[str]


async def spool(request: web.Request, limit: int) -> Path:
    """The request's body in a temporary file (the caller removes it); 413 past ``limit``
    bytes, and nothing is left behind then."""
    if request.content_length is not None and request.content_length > limit:
        raise UploadRefused(f"upload larger than {limit} bytes (MAILSIFT_API_MAX_UPLOAD)",
                            status=413, code="payload_too_large")
    fd, name = tempfile.mkstemp(prefix="mailsift-upload-", suffix=".part")
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.content.iter_chunked(SAMPLE_BYTES):
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(f"upload larger than {limit} bytes "
                                        "(MAILSIFT_API_MAX_UPLOAD)",
                                        status=413, code="payload_too_large")
                f.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _normalized_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.strip().lower())


def _looks_like_address(value: str) -> bool:
    text = value.strip()
    return "@" in text and " " not in text and not text.startswith("@")


def plan_csv(header: list[str], sample: list[list[str]], *, column: str | None,
             bound: int = 0) -> UploadPlan:
    """Where the address column of a CSV is, from its first row and a sample of rows.

    ``column`` (``?column=``) is matched case-insensitively; without it, a header named
    like an address column wins, then the column whose sample values look most like
    addresses (at least half of them), then a header-less file (its first row has an
    address: the columns are named ``column_1`` …)."""
    if column is not None:
        match = next((i for i, h in enumerate(header)
                      if h.strip().lower() == column.strip().lower()), None)
        if match is None:
            raise UploadRefused(f"no column {column!r} (columns: "
                                f"{', '.join(header) or 'none'}); name one with ?column=",
                                code="no_such_column")
        return UploadPlan("csv", header, match, True, bound)
    named = [i for i, h in enumerate(header) if _normalized_header(h) in _EMAIL_HEADERS]
    exact = [i for i in named if _normalized_header(header[i]) == "email"]
    if exact or named:
        return UploadPlan("csv", header, (exact or named)[0], True, bound)
    if any(_looks_like_address(h) for h in header):
        cell = next(i for i, h in enumerate(header) if _looks_like_address(h))
        names = [f"column_{i + 1}" for i in range(len(header))]
        return UploadPlan("csv", names, cell, False, bound)
    best, best_hits = None, 0
    for i in range(len(header)):
        values = [r[i] for r in sample if i < len(r) and r[i].strip()]
        hits = sum(_looks_like_address(v) for v in values)
        if values and hits * 2 >= len(values) and hits > best_hits:
            best, best_hits = i, hits
    if best is None:
        raise UploadRefused(f"no address column found (columns: "
                            f"{', '.join(header) or 'none'}); name it with ?column=",
                            code="no_such_column")
    return UploadPlan("csv", header, best, True, bound)


def _open(path: Path, kind: str) -> io.TextIOWrapper:
    # newline="": the csv module reads quoted newlines; "\n": a text line ends at LF only
    return path.open(encoding="utf-8-sig", errors="replace",
                     newline="" if kind == "csv" else "\n")


def _refuse_binary(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
    for magic, what in _SIGNATURES.items():
        if head.startswith(magic):
            raise UploadRefused(f"the upload is {what}, not a list: export it as CSV",
                                status=415, code="not_a_list")
    if b"\x00" in head:
        raise UploadRefused("the upload is a binary file (it has NUL bytes), not a CSV or "
                            "text list", status=415, code="not_a_list")


def _line_bound(path: Path) -> int:
    """At least the number of rows (a quoted newline only makes it larger)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def inspect_upload(path: Path, kind: str, *, column: str | None, max_rows: int
                   ) -> UploadPlan:
    """The plan for reading the spooled upload, or :class:`UploadRefused` saying why it
    cannot be verified (binary, no address column, no address, too many rows)."""
    _refuse_binary(path)
    bound = _line_bound(path)
    if kind == "text":
        plan = UploadPlan("text", None, 0, False, bound)
    else:
        with _open(path, "csv") as f:
            reader = csv.reader(f)
            try:
                header = next(reader, [])
                sample = list(islice(reader, SAMPLE_ROWS))
            except csv.Error as exc:
                raise UploadRefused(f"CSV upload: {exc}") from None
        if not any(h.strip() for h in header):
            raise UploadRefused("no addresses to verify (the upload is empty)",
                                code="empty_job")
        plan = plan_csv(header, sample, column=column, bound=bound)
        if plan.header:  # the header line is no row
            bound -= 1
            plan = UploadPlan(plan.kind, plan.columns, plan.email_cell, True, bound)
    count_all = bound > max_rows or bound <= COUNT_BEFORE_ANSWER
    count = 0
    try:
        for _ in upload_rows(path, plan):
            count += 1
            if not count_all:
                break  # not empty, and cannot be over the limit: counted while stored
    except csv.Error as exc:
        raise UploadRefused(f"CSV upload: {exc}") from None
    if count == 0:
        raise UploadRefused("no addresses to verify (no row has one)", code="empty_job")
    if count > max_rows:
        raise UploadRefused(f"{count} addresses in one job; at most {max_rows} "
                            "(MAILSIFT_API_JOB_MAX_ADDRESSES)",
                            status=413, code="job_too_large")
    if count_all:
        plan = UploadPlan(plan.kind, plan.columns, plan.email_cell, plan.header, count,
                          exact=True)
    return plan


def upload_rows(path: Path, plan: UploadPlan) -> Iterator[UploadRow]:
    """The upload's rows that have an address, in order (a blank address is skipped, as
    ``mailsift validate`` skips it); each CSV row has exactly one cell per column."""
    with _open(path, plan.kind) as f:
        if plan.kind == "text":
            for i, line in enumerate(f, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield UploadRow(i, text, (text,))
            return
        reader = csv.reader(f)
        width = len(plan.columns or ())
        if plan.header:
            next(reader, None)
        for cells in reader:
            if plan.email_cell >= len(cells):
                continue
            email = cells[plan.email_cell].strip()
            if not email:
                continue
            if len(cells) != width:
                cells = (cells + [""] * width)[:width]
            yield UploadRow(reader.line_num, email, cells)
