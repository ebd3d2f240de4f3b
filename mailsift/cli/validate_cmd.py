"""``mailsift validate``: verify a list through the pipeline, with progress, and write results.

Submits the list as a job, follows its verdicts and job events (a progress bar on stderr:
done/total, rate, ETA), and when the job completes writes one row per input row, in input
order; repeated addresses get the same verdict.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from checks.model import ParsedAddress
from checks.syntax import input_key, parse_address
from mailsift.cli.errors import fail
from mailsift.cli.inputs import read_addresses
from mailsift.cli.jobs_cmd import emit_rows
from mailsift.cli.render import console
from mailsift.results import RESULT_COLUMNS, result_row
from mailsift.settings import Settings, load_settings
from schemas import VerdictEvent
from schemas.submission import submittable_email

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
) -> None:
    """Verify a list end to end through the pipeline and write one row per input row."""
    from streams.client import kafka_calls, submit_job

    settings = load_settings()
    rows = read_addresses(input_file, column=column)
    if not rows:
        fail(f"{input_file} holds no addresses")
    fmt = fmt or (output.suffix.lstrip(".").lower() if output else "csv")
    if fmt not in {"csv", "jsonl", "table"}:
        fail(f"unknown format {fmt!r}: use csv, jsonl or table")
    emails = [r.email for r in rows]
    with kafka_calls(settings):
        job = asyncio.run(submit_job(settings, emails))
        err = console(stderr=True)
        err.print(f"job [bold]{job}[/]: {len(emails)} addresses submitted")
        try:
            verdicts = asyncio.run(_wait(settings, job, len(emails), timeout or None))
        except TimeoutError:
            fail(f"job {job} not complete after {timeout:g}s; see `mailsift status {job}`")
    out_rows = []
    for email in emails:
        parsed = parse_address(submittable_email(email), allow_test_tld=settings.allow_test_tld)
        normalized = parsed.normalized if isinstance(parsed, ParsedAddress) else ""
        verdict = verdicts.get(input_key(parsed))
        row = result_row(verdict) if verdict else {c: "" for c in RESULT_COLUMNS}
        # a repeated address shares the verdict but keeps its own spelling
        out_rows.append(row | {"email": email, "normalized": normalized})
    emit_rows(out_rows, fmt, output)


async def _wait(settings: Settings, job: str, total: int, timeout: float | None
                ) -> dict[str, VerdictEvent]:
    from streams.client import follow

    verdicts: dict[str, VerdictEvent] = {}
    duplicates: set[str] = set()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(),
                        console=console(stderr=True), transient=False)
    started = time.monotonic()

    async def run() -> None:
        with progress:
            task = progress.add_task("verifying", total=total, rate="")
            stalled = asyncio.create_task(_stall_hint(progress, task, lambda: len(verdicts)))
            try:
                async for item in follow(settings, job):
                    if item.verdict is not None and item.verdict.replay_id is None:
                        verdicts[item.verdict.dedupe_key] = item.verdict
                    elif item.job is not None and item.job.replay_id is None:
                        if item.job.kind == "duplicate" and item.job.source:
                            duplicates.add(item.job.source)
                        elif item.job.kind == "completed":
                            progress.update(task, completed=total, rate=_rate(total, started))
                            return
                    done = len(verdicts) + len(duplicates)
                    progress.update(task, completed=done, rate=_rate(done, started))
            finally:
                stalled.cancel()

    await asyncio.wait_for(run(), timeout)
    return verdicts


def _rate(done: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"{done / elapsed:,.0f}/s" if elapsed > 0 and done else ""


async def _stall_hint(progress: Progress, task: Any, done: Any) -> None:
    await asyncio.sleep(STALL_HINT_AFTER)
    if not done():
        progress.update(task, description="waiting for a worker (is `mailsift worker` "
                                          "running?)")
