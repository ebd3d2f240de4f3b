"""``mailsift check``: run the engine directly on a few addresses (no Kafka), for debugging."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from checks import Engine, EngineConfig, VerificationResult
from mailsift.cli.errors import fail
from mailsift.cli.inputs import read_addresses
from mailsift.cli.render import console, show
from mailsift.settings import load_settings


def check(
    addresses: list[str] = typer.Argument(None, help="Addresses to check."),
    file: Path | None = typer.Option(None, "--file", "-f",
                                     help="Addresses file: one per line, or CSV (email column)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON lines."),
) -> None:
    """Verify addresses with the engine directly and print verdicts with their evidence."""
    items = list(addresses or [])
    if file is not None:
        items += [row.email for row in read_addresses(file)]
    if not items:
        fail("give addresses to check, or --file FILE")
    engine = Engine(EngineConfig.from_settings(load_settings()))

    async def run() -> list[VerificationResult]:
        try:
            return await engine.verify_many(items)
        finally:
            await engine.aclose()  # QUIT the pooled sessions before the loop ends

    results = asyncio.run(run())
    if as_json:
        for r in results:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
    else:
        show(console(), results)
