"""``mailsift validate``: verify a list through the pipeline, with progress, and write results.

Submits the list as a job, follows its verdicts and job events (a progress bar on stderr:
done/total, rate, ETA), and when the job completes writes one row per input row, in input
order: a CSV's own columns first, then ours (:func:`mailsift.results.merged_columns`).
A repeated address gets the same verdict, and ``duplicate_of`` names the line of its
first row. ``--verdict`` keeps the rows of some verdicts only. A summary ends the run on
stderr: rows by verdict, the top reasons, the elapsed time and the rate.

Memory stays flat whatever the list's length: the list is read as it is submitted, the
verdicts go to a temporary SQLite file (one row per address), and the results are written
while the list is read a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from checks.model import ParsedAddress
from checks.syntax import input_key, parse_address
from mailsift.cli.errors import fail
from mailsift.cli.jobs_cmd import VOCABULARY_HELP, show_rows, vocabulary_of
from mailsift.cli.render import VERDICT_STYLE, console
from mailsift.inputs import InputRow, iter_addresses
from mailsift.results import (
    RESULT_COLUMNS,
    VERDICTS,
    merged_columns,
    merged_row,
    parse_verdicts,
    result_row,
    write_rows,
)
from mailsift.settings import Settings, load_settings
from mailsift.vocabulary import vocabulary_columns, with_vocabulary
from schemas import VerdictEvent
from schemas.submission import submittable_email

if TYPE_CHECKING:
    from streams.client import Followed

STALL_HINT_AFTER = 30.0


def validate(
    input_file: Path = typer.Argument(..., metavar="INPUT",
                                      help="Addresses: one per line, or a CSV."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write results here (default: stdout)."),
    fmt: str | None = typer.Option(None, "--format", "-f",
                                   help="csv, jsonl or table (default: from -o, else csv)"),
    column: str | None = typer.Option(None, "--column", help="CSV column with the address."),
    timeout: float = typer.Option(0, "--timeout", help="Give up after this many seconds "
                                  "(0 = wait for completion)."),
    vocabulary: str = typer.Option("mailsift", "--vocabulary", help=VOCABULARY_HELP),
    wait_for_budget: bool = typer.Option(
        True, "--wait-for-budget/--no-wait-for-budget",
        help="Past a domain's or MX host's daily probe budget, wait for the next day "
             "(default), or end unknown/probe_budget at once."),
    verdicts: str | None = typer.Option(
        None, "--verdict", help="Write only the rows of these verdicts (comma list: "
                                "deliverable, undeliverable, risky, unknown)."),
) -> None:
    """Verify a list end to end through the pipeline and write one row per input row."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import kafka_calls, submit_emails

    settings = load_settings()
    fmt = fmt or (output.suffix.lstrip(".").lower() if output else "csv")
    if fmt not in {"csv", "jsonl", "table"}:
        fail(f"unknown format {fmt!r}: use csv, jsonl or table")
    vocabulary = vocabulary_of(vocabulary)
    wanted = verdict_filter(verdicts)
    first = next(iter_addresses(input_file, column=column), None)
    if first is None:
        fail(f"{input_file} holds no addresses")
    started = time.monotonic()
    emails = (r.email for r in iter_addresses(input_file, column=column))
    with tempfile.TemporaryDirectory(prefix="mailsift-validate-") as tmp, \
            VerdictStore(Path(tmp, "verdicts.sqlite")) as store:
        with kafka_calls(settings):
            job, total = asyncio.run(submit_emails(settings, emails,
                                                   wait_for_budget=wait_for_budget))
            err = console(stderr=True)
            err.print(f"job [bold]{job}[/]: {total} addresses submitted")
            try:
                asyncio.run(_wait(settings, job, total, timeout or None, store))
            except TimeoutError:
                fail(f"job {job} not complete after {timeout:g}s; see `mailsift status {job}`")
        elapsed = time.monotonic() - started
        summary = Summary()
        rows = (summary.count(with_vocabulary(r, vocabulary)) for r in _result_rows(
            store, iter_addresses(input_file, column=column), settings.allow_test_tld))
        kept = (r for r in rows if wanted is None or r["verdict"] in wanted)
        if fmt == "table":
            show_rows(list(kept), vocabulary)
            summary.show(elapsed)
            return
        ours = [*vocabulary_columns(vocabulary), "duplicate_of"]
        columns, rename = merged_columns(list(first.row or {}), ours)
        written = _write((merged_row(r.pop(_ORIGINAL), r, rename) for r in kept), fmt,
                         output, columns)
    summary.show(elapsed)
    if output:
        console(stderr=True).print(f"wrote {written} rows to {output}"
                                   + (f" (verdicts {', '.join(sorted(wanted))})"
                                      if wanted else ""))


def verdict_filter(text: str | None) -> set[str] | None:
    """``--verdict``'s comma list as a set (None: every verdict), or one error line.

    >>> sorted(verdict_filter("Risky, deliverable"))
    ['deliverable', 'risky']
    """
    try:
        return parse_verdicts(text)
    except ValueError as exc:
        fail(f"--verdict: {exc}")


#: where a result row carries its input row until it is written
_ORIGINAL = "\0original"


class Summary:
    """Rows by verdict and by reason, counted as they are written; shown on stderr."""

    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def count(self, row: dict[str, Any]) -> dict[str, Any]:
        self.verdicts[row["verdict"] or "none"] += 1
        self.reasons[row["reason"] or "none"] += 1
        return row

    def show(self, elapsed: float) -> None:
        total = sum(self.verdicts.values())
        table = Table(title="summary", show_header=False, box=None, title_justify="left")
        for verdict in (*VERDICTS, *sorted(set(self.verdicts) - set(VERDICTS))):
            n = self.verdicts.get(verdict, 0)
            share = f"{100 * n / total:.1f} %" if total else ""
            table.add_row(f"[{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]", str(n), share)
        top = ", ".join(f"{reason} {n}" for reason, n in self.reasons.most_common(5))
        table.add_row("top reasons", top, "")
        rate = f"{total / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        table.add_row("elapsed", f"{elapsed:,.1f} s", rate)
        console(stderr=True).print(table)


def _result_rows(store: VerdictStore, rows: Iterable[InputRow], allow_test_tld: bool
                 ) -> Iterator[dict[str, Any]]:
    """One result row per input row, in input order (its input row under ``_ORIGINAL``)."""
    empty = {c: "" for c in RESULT_COLUMNS}
    for r in rows:
        parsed = parse_address(submittable_email(r.email), allow_test_tld=allow_test_tld)
        normalized = parsed.normalized if isinstance(parsed, ParsedAddress) else ""
        key = input_key(parsed)
        row = store.get(key) or empty
        first = store.first_line(key, r.line)
        # a repeated address shares the verdict but keeps its own spelling
        yield row | {"email": r.email, "normalized": normalized,
                     "duplicate_of": "" if first == r.line else first, _ORIGINAL: r.row}


def _write(rows: Iterable[dict[str, Any]], fmt: str, output: Path | None,
           columns: list[str]) -> int:
    out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    try:
        write_rows(counted(), fmt, out, columns)
    finally:
        if output:
            out.close()
    return count


class VerdictStore:
    """The latest verdict row per dedupe key and the duplicate sources, in a SQLite file
    (so a list of millions needs no memory for them)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE verdicts (key TEXT PRIMARY KEY, row BLOB NOT NULL)")
        self.db.execute("CREATE TABLE duplicates (source TEXT PRIMARY KEY)")
        self.db.execute("CREATE TABLE firsts (key TEXT PRIMARY KEY, line INTEGER NOT NULL)")
        self.addresses = 0
        self.duplicates = 0

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def put(self, verdict: VerdictEvent) -> None:
        row = orjson.dumps(result_row(verdict))
        cur = self.db.execute("INSERT OR IGNORE INTO verdicts VALUES (?, ?)",
                              (verdict.dedupe_key, row))
        if cur.rowcount:
            self.addresses += 1
        else:  # a later verdict of the address (a retry's) replaces the earlier
            self.db.execute("UPDATE verdicts SET row = ? WHERE key = ?",
                            (row, verdict.dedupe_key))

    def duplicate(self, source: str) -> None:
        cur = self.db.execute("INSERT OR IGNORE INTO duplicates VALUES (?)", (source,))
        self.duplicates += cur.rowcount

    def first_line(self, key: str, line: int) -> int:
        """The line of the first row of ``key`` (``line`` when this is it)."""
        self.db.execute("INSERT OR IGNORE INTO firsts VALUES (?, ?)", (key, line))
        found = self.db.execute("SELECT line FROM firsts WHERE key = ?", (key,)).fetchone()
        return int(found[0])

    def get(self, key: str) -> dict[str, Any] | None:
        found = self.db.execute("SELECT row FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if found is None else dict(orjson.loads(found[0]))

    @property
    def done(self) -> int:
        return self.addresses + self.duplicates


async def _wait(settings: Settings, job: str, total: int, timeout: float | None,
                store: VerdictStore) -> None:
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import follow

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(),
                        console=console(stderr=True), transient=False)
    started = time.monotonic()

    async def run() -> None:
        with progress:
            task = progress.add_task("verifying", total=total, rate="")
            stalled = asyncio.create_task(_stall_hint(progress, task, lambda: store.done))
            try:
                async with contextlib.aclosing(follow(settings, job)) as followed:
                    await _record(followed, store, progress, task, total, started)
            finally:
                stalled.cancel()

    await asyncio.wait_for(run(), timeout)


async def _record(followed: AsyncIterator[Followed], store: VerdictStore, progress: Progress,
                  task: Any, total: int, started: float) -> None:
    """Keep the job's verdicts and duplicates as they come, until it completes and every
    one of them is in: ``completed`` can be read before the last verdicts (it is on another
    topic, whose partitions the follower may have caught up with sooner, after a broker
    pause or behind a long history of other jobs' verdicts)."""
    completed = False
    async for item in followed:
        if item.verdict is not None and item.verdict.replay_id is None:
            store.put(item.verdict)
        elif item.job is not None and item.job.replay_id is None:
            if item.job.kind == "duplicate" and item.job.source:
                store.duplicate(item.job.source)
            elif item.job.kind == "completed":
                completed = True
        done = store.done
        progress.update(task, completed=min(done, total), rate=_rate(done, started))
        if completed and done >= total:
            return


def _rate(done: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"{done / elapsed:,.0f}/s" if elapsed > 0 and done else ""


async def _stall_hint(progress: Progress, task: Any, done: Any) -> None:
    await asyncio.sleep(STALL_HINT_AFTER)
    if not done():
        progress.update(task, description="waiting for a worker (is `mailsift worker` "
                                          "running?)")
