"""``mailsift api``: run the HTTP API (a separate process from the pipeline workers)."""

from __future__ import annotations

import logging
import logging.config

import typer

from mailsift.cli.errors import stderr
from mailsift.logs import logging_config
from mailsift.settings import load_settings

__all__ = ["api"]


def api(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port to listen on."),
) -> None:
    """Run the HTTP API: submit jobs, job status, results, verify, health, metrics."""
    from aiohttp import web

    # aiohttp and the services' clients: only `mailsift api` loads them
    from mailsift.api.accesslog import AccessLogger
    from mailsift.api.app import create_app

    settings = load_settings()
    if not (settings.api_tokens or settings.api_admin_tokens):
        stderr.print("[bold yellow]warning:[/] MAILSIFT_API_TOKENS is empty: every endpoint "
                     "except /healthz and /openapi.json answers 401", soft_wrap=True)
    logging.config.dictConfig(logging_config(settings.log_format, "INFO"))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    app = create_app(settings)
    # the request's path without its query string: a `?token=` never reaches the log
    web.run_app(app, host=host, port=port, print=lambda msg: stderr.print(msg, markup=False),
                access_log_class=AccessLogger)
