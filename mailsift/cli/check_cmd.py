"""``mailsift check``: run the engine directly on a few addresses (no Kafka), for debugging."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from agents.verdicts import attempt_record, evidence_with_attempts
from checks import Engine, VerificationResult
from checks.score import score
from mailsift.cli.errors import fail
from mailsift.cli.render import console, show
from mailsift.compose import engine_config
from mailsift.inputs import read_addresses
from mailsift.settings import load_settings


def check(
    addresses: list[str] = typer.Argument(None, help="Addresses to check."),
    file: Path | None = typer.Option(None, "--file", "-f",
                                     help="Addresses file: one per line, or CSV (email column)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON lines."),
    retry: bool = typer.Option(
        False, "--retry",
        help="Ask temporary outcomes (greylisting, 4xx, timeouts) again after each of "
             "MAILSIFT_RETRY_DELAYS, as the pipeline does; the evidence then lists every "
             "attempt."),
) -> None:
    """Verify addresses with the engine directly and print verdicts with their evidence."""
    items = list(addresses or [])
    if file is not None:
        items += [row.email for row in read_addresses(file)]
    if not items:
        fail("give addresses to check, or --file FILE")
    settings = load_settings()
    engine = Engine(engine_config(settings))
    histories: list[list[dict[str, Any]]] = [[] for _ in items]

    async def run() -> list[VerificationResult]:
        try:
            results = await engine.verify_many(items)
            for attempt, delay in enumerate(settings.retry_delays if retry else (), start=1):
                pending = [i for i, r in enumerate(results) if r.temporary]
                if not pending:
                    break
                for i in pending:  # stamped when it was the outcome, before the wait
                    histories[i].append(attempt_record(attempt, results[i]))
                print(f"{len(pending)} temporary outcome(s): asking again in {delay:g} s",
                      file=sys.stderr)
                await asyncio.sleep(delay)
                again = await engine.verify_many([items[i] for i in pending])
                for i, result in zip(pending, again, strict=True):
                    results[i] = result
            return results
        finally:
            await engine.aclose()  # QUIT the pooled sessions before the loop ends

    results = asyncio.run(run())
    if as_json:
        for r, history in zip(results, histories, strict=True):
            out = r.to_dict()
            attempts = len(history) + 1
            out["evidence"] = evidence_with_attempts(r, history, attempts)
            out["score"] = score(r, attempts=attempts)
            print(json.dumps(out, ensure_ascii=False))
    else:
        show(console(), results)
