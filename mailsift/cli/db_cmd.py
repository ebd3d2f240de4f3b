"""``mailsift db migrate``, ``mailsift db purge`` and ``mailsift sink rebuild``."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from mailsift.cli.errors import fail
from mailsift.cli.render import console
from mailsift.settings import Settings, load_settings

db_app = typer.Typer(help="The Postgres sink's database.", no_args_is_help=True)
sink_app = typer.Typer(help="The Postgres sink.", no_args_is_help=True)


def _database(settings: Settings) -> str:
    if not settings.database_url:
        fail("MAILSIFT_DATABASE_URL is empty: the Postgres sink is disabled")
    return settings.database_url


@db_app.command()
def migrate() -> None:
    """Create or upgrade the tables (versioned migrations, each applied once)."""
    # asyncpg is slow to import: only the commands that use Postgres load it
    from sinks.postgres import PostgresSink

    settings = load_settings()

    async def run() -> list[int]:
        sink = PostgresSink(_database(settings))
        try:
            return await sink.migrate()
        finally:
            await sink.close()

    try:
        applied = asyncio.run(run())
    except OSError as exc:
        fail(f"cannot reach Postgres at {settings.database_url}: {exc}")
    console().print(f"applied migrations: {applied}" if applied else "database is up to date")


@db_app.command()
def purge() -> None:
    """Remove the jobs older than MAILSIFT_RETENTION_DAYS now (workers also do it every
    MAILSIFT_PURGE_INTERVAL seconds)."""
    # asyncpg is slow to import: only the commands that use Postgres load it
    from sinks.postgres import PostgresSink
    from streams.purge import purge_cutoff, purge_once

    settings = load_settings()

    async def run() -> Any:
        sink = PostgresSink(_database(settings), max_connections=1)
        try:
            return await purge_once(settings, sink)
        finally:
            await sink.close()

    removed = asyncio.run(run())
    console().print(f"purged {removed.jobs} jobs ({removed.runs} runs, {removed.verdicts} "
                    f"verdicts) with nothing newer than {purge_cutoff(settings):%Y-%m-%d %H:%M} "
                    f"UTC ({settings.retention_days:g} days)")


@sink_app.command()
def rebuild() -> None:
    """Re-read the verdicts and jobs topics from the beginning into an empty database."""
    # aiokafka and asyncpg are slow to import: only this command loads them
    from streams.client import kafka_calls
    from streams.rebuild import DatabaseNotEmpty, rebuild_from_topics

    settings = load_settings()
    _database(settings)
    try:
        with kafka_calls(settings):
            verdicts, jobs = asyncio.run(rebuild_from_topics(settings))
    except DatabaseNotEmpty as exc:
        fail(str(exc))
    console().print(f"rebuilt: {verdicts} verdict events and {jobs} job events read")
