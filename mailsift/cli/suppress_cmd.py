"""``mailsift suppress add|remove|list``: the domains and addresses never probed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from checks.suppression import entry_key, entry_text
from mailsift.cli.errors import fail
from mailsift.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="The suppression list: domains (and every name under them) and addresses that are "
         "never probed; their verdict is unknown, reason suppressed.",
    no_args_is_help=True)

T = TypeVar("T")


def _with_list(action: Callable[..., Awaitable[T]]) -> T:
    # redis is slow to import: only the commands that use it load it
    from sinks.redis_client import redis_client
    from sinks.redis_suppression import RedisSuppressionList

    settings = load_settings()
    if not settings.redis_url:
        fail("MAILSIFT_REDIS_URL is empty: the suppression list lives in Redis")

    async def run() -> T:
        client = redis_client(settings.redis_url)
        try:
            return await action(RedisSuppressionList(client, prefix=settings.redis_prefix))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except ValueError as exc:  # an entry that is neither a domain nor an address
        fail(str(exc))


def _distinct(entries: list[str]) -> int:
    """How many entries are different (``Example.com`` and ``example.com`` are one); the
    list has validated them already."""
    return len({entry_key(e) for e in entries})


@app.command()
def add(entries: list[str] = typer.Argument(..., help="Domains or addresses.")) -> None:
    """Put domains or addresses on the list: from now on intake gives them their verdict
    without any DNS or SMTP traffic."""
    new = _with_list(lambda s: s.add(entries))
    print(f"{new} added, {_distinct(entries) - new} already on the list")


@app.command()
def remove(entries: list[str] = typer.Argument(..., help="Domains or addresses.")) -> None:
    """Take domains or addresses off the list."""
    gone = _with_list(lambda s: s.remove(entries))
    print(f"{gone} removed, {_distinct(entries) - gone} were not on the list")


@app.command(name="list")
def list_() -> None:
    """Print the list, one entry a line: ``domain example.com`` or ``address a@b.com``."""
    for key in _with_list(lambda s: s.keys()):
        print(f"{key.partition(':')[0]} {entry_text(key)}")
