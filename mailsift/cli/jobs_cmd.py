"""Pipeline commands: ``submit``, ``status``, ``results``, ``replay``, ``jobs delete``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.table import Table

from mailsift.cli.errors import fail
from mailsift.cli.render import VERDICT_STYLE, console
from mailsift.inputs import iter_addresses
from mailsift.results import result_row, write_rows
from mailsift.settings import load_settings
from mailsift.vocabulary import (
    VENDOR_FIELDS,
    VOCABULARIES,
    check_vocabulary,
    vocabulary_columns,
    with_vocabulary,
)

VOCABULARY_HELP = ("Also give a verifier's status words, as columns after ours: "
                   f"{', '.join(VOCABULARIES)} (mailsift adds none; see the README).")


def vocabulary_of(name: str) -> str:
    """``--vocabulary``'s value, or one error line and exit code 2."""
    try:
        return check_vocabulary(name)
    except ValueError as exc:
        fail(f"--vocabulary: {exc}")


def submit(
    file: Path = typer.Argument(..., help="Addresses: one per line, or a CSV."),
    column: str | None = typer.Option(None, "--column", help="CSV column with the address."),
    job_id: str | None = typer.Option(None, "--job-id", help="Use this job id."),
    wait_for_budget: bool = typer.Option(
        True, "--wait-for-budget/--no-wait-for-budget",
        help="Past a domain's or MX host's daily probe budget, wait for the next day "
             "(default), or end unknown/probe_budget at once."),
) -> None:
    """Submit a list as a job and print its id at once (the workers do the rest)."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import kafka_calls, submit_emails

    settings = load_settings()
    if next(iter_addresses(file, column=column), None) is None:
        fail(f"{file} holds no addresses")
    emails = (r.email for r in iter_addresses(file, column=column))  # read as submitted
    with kafka_calls(settings):
        job, _ = asyncio.run(submit_emails(settings, emails, job_id=job_id,
                                           wait_for_budget=wait_for_budget))
    print(job)


def status(
    job_id: str = typer.Argument(..., help="The job id."),
    replay_id: str | None = typer.Option(None, "--replay", help="A replay run of the job."),
) -> None:
    """Show a job's progress: submissions accounted for, counts by verdict."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import job_progress

    settings = load_settings()
    if not settings.redis_url:
        fail("job status needs Redis: set MAILSIFT_REDIS_URL")
    try:
        progress = asyncio.run(job_progress(settings, job_id, replay_id))
    except (OSError, RedisConnectionError) as exc:
        fail(f"cannot reach Redis at {settings.redis_url}: {exc}")
    table = Table(show_header=False, box=None)
    state = "completed" if progress.completed else (
        "unknown job" if progress.total is None and not progress.done else "running")
    table.add_row("job", job_id + (f" (replay {replay_id})" if replay_id else ""))
    table.add_row("state", state)
    total = "?" if progress.total is None else str(progress.total)
    table.add_row("done", f"{progress.done} / {total} ({progress.duplicates} duplicates)")
    for verdict, n in sorted(progress.by_verdict.items()):
        table.add_row(f"[{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]", str(n))
    console().print(table)
    if state == "unknown job":
        raise typer.Exit(1)


def results(
    job_id: str = typer.Argument(..., help="The job id."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or jsonl"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
    replay_id: str | None = typer.Option(None, "--replay", help="A replay run of the job."),
    vocabulary: str = typer.Option("mailsift", "--vocabulary", help=VOCABULARY_HELP),
) -> None:
    """Print a job's verdicts (the latest per address), read from the verdicts topic."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import JobErased, job_verdicts, kafka_calls

    if fmt not in {"table", "csv", "jsonl"}:
        fail(f"unknown format {fmt!r}: use table, csv or jsonl")
    vocabulary = vocabulary_of(vocabulary)
    settings = load_settings()
    try:
        with kafka_calls(settings):
            verdicts = asyncio.run(job_verdicts(settings, job_id, replay_id))
    except JobErased as exc:
        fail(str(exc))
    if not verdicts:
        fail(f"no verdicts for job {job_id} (yet?)")
    emit_rows([with_vocabulary(result_row(v), vocabulary) for v in verdicts.values()], fmt,
              output, vocabulary)


def emit_rows(rows: list[dict[str, Any]], fmt: str, output: Path | None,
              vocabulary: str = "mailsift") -> None:
    """Result rows as a table on stdout, or as CSV/JSONL to ``output`` (else stdout)."""
    if fmt == "table":
        show_rows(rows, vocabulary)
        return
    out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        write_rows(rows, fmt, out, vocabulary_columns(vocabulary))
    finally:
        if output:
            out.close()
    if output:
        console(stderr=True).print(f"wrote {len(rows)} rows to {output}")


def show_rows(rows: list[dict[str, Any]], vocabulary: str = "mailsift") -> None:
    """Result rows as a table on stdout (with the vocabulary's columns after ours)."""
    table = Table(header_style="bold")
    extra = [f"{vocabulary}_{f}" for f in VENDOR_FIELDS[vocabulary]]
    for col in ("email", "verdict", "reason", "smtp_code", "suggestion", *extra):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = VERDICT_STYLE.get(r["verdict"], "")
        table.add_row(r["email"], f"[{style}]{r['verdict']}[/]", r["reason"],
                      str(r["smtp_code"]), r["suggestion"], *(str(r.get(c, "")) for c in extra))
    console().print(table)


def replay(
    job_id: str | None = typer.Option(None, "--job", help="Replay this job only."),
    since: str | None = typer.Option(None, "--since", help="Submitted at or after (ISO 8601)."),
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="Replay every submission in the topic."),
) -> None:
    """Re-verify submissions from the submissions topic (new verdicts, a new replay id)."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import JobErased, kafka_calls
    from streams.replay import parse_since
    from streams.replay import replay as run_replay

    if not (job_id or since or from_beginning):
        fail("say what to replay: --job ID, --since ISO-TIME or --from-beginning")
    try:
        since_at = parse_since(since) if since else None
    except ValueError:
        fail(f"--since: expected an ISO 8601 time like 2026-11-25T14:00:00Z, got {since!r}")
    settings = load_settings()
    try:
        with kafka_calls(settings):
            summary = asyncio.run(run_replay(settings, job_id=job_id, since=since_at))
    except JobErased as exc:
        fail(str(exc))
    c = console()
    c.print(f"replay [bold]{summary.replay_id}[/]: {summary.replayed} of {summary.scanned} "
            f"submissions in {len(summary.jobs)} job(s)"
            + (f", {summary.skipped_malformed} malformed skipped"
               if summary.skipped_malformed else "")
            + (f", {summary.skipped_erased} of erased jobs skipped"
               if summary.skipped_erased else ""))
    for job, n in summary.jobs.most_common():
        c.print(f"  {job}: {n}  (mailsift status {job} --replay {summary.replay_id})")


jobs_app = typer.Typer(help="Jobs: erase one on request.", no_args_is_help=True)


@jobs_app.command()
def delete(
    job_id: str = typer.Argument(..., help="The job id."),
) -> None:
    """Erase a job now: its rows in Postgres, its keys in Redis, its webhook; replay and
    sink rebuild leave it out from then on (its records stay on the broker, unread, until
    the topics' retention removes them)."""
    # the clients are slow to import: only this command loads them
    from mailsift.erasure import Eraser
    from streams.client import kafka_calls

    settings = load_settings()

    async def run() -> Any:
        eraser = Eraser.from_settings(settings)
        try:
            return await eraser.erase(job_id)
        finally:
            await eraser.close()

    with kafka_calls(settings):
        erasure = asyncio.run(run())
    rows = erasure.rows
    stored = (f"{rows.verdicts} verdict rows and {rows.runs} job runs in Postgres, "
              if rows is not None else "")
    console().print(f"erased job {job_id}: {stored}{erasure.redis_keys} keys in Redis"
                    + ("" if erasure.found else " (nothing of it was stored; it stays "
                       "erased all the same)"))
