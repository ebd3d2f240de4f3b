"""``mailsift worker``: run one pipeline worker."""

from __future__ import annotations

import typer

from checks.config import EngineConfig
from mailsift.settings import load_settings


def worker(
    loglevel: str = typer.Option("info", "--loglevel", "-l",
                                 help="crit, error, warn, info or debug"),
) -> None:
    """Run a Faust worker of the pipeline (start several to share the partitions)."""
    from streams.worker import run_worker

    settings = load_settings()
    EngineConfig.from_settings(settings)  # a wrong provider name: one line, before Kafka
    run_worker(settings, loglevel=loglevel)
