"""``mailsift worker``: run one pipeline worker."""

from __future__ import annotations

import typer

from mailsift.compose import build_services, engine_config
from mailsift.logs import logging_config
from mailsift.settings import load_settings


def worker(
    loglevel: str = typer.Option("info", "--loglevel", "-l",
                                 help="crit, error, warn, info or debug"),
) -> None:
    """Run a Faust worker of the pipeline (start several to share the partitions)."""
    from streams.worker import run_worker  # the worker's imports are only a worker's

    settings = load_settings()
    engine_config(settings)  # a wrong provider name: one line, before Kafka
    # text: Faust's own lines; json: ours (one object a line, with job, stage and worker)
    config = (logging_config(settings.log_format, loglevel)
              if settings.log_format == "json" else None)
    run_worker(settings, build_services, loglevel=loglevel, logging_config=config)
