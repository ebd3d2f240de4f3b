"""Entry point of the ``mailsift`` console script."""

from __future__ import annotations

import logging
import sys

import typer

from mailsift.cli import (
    api_cmd,
    check_cmd,
    db_cmd,
    jobs_cmd,
    stack_cmd,
    suppress_cmd,
    validate_cmd,
    worker_cmd,
)
from mailsift.cli.errors import run_guarded
from mailsift.compose import engine_config
from mailsift.logs import install_masking
from mailsift.sender_check import sender_warning
from mailsift.settings import load_settings, settings_table

app = typer.Typer(
    help="mailsift: event-sourced email-list verification (syntax, DNS, polite SMTP probe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(db_cmd.sink_app, name="sink")
app.add_typer(suppress_cmd.app, name="suppress")
app.add_typer(jobs_cmd.jobs_app, name="jobs")
app.command(name="check")(check_cmd.check)
app.command(name="validate")(validate_cmd.validate)
app.command(name="worker")(worker_cmd.worker)
app.command(name="api")(api_cmd.api)
app.command(name="submit")(jobs_cmd.submit)
app.command(name="status")(jobs_cmd.status)
app.command(name="results")(jobs_cmd.results)
app.command(name="replay")(jobs_cmd.replay)


@app.command()
def config() -> None:
    """Validate the MAILSIFT_* settings and print the table of variables; warn when the
    probe's sender domain does not resolve."""
    settings = load_settings()
    engine_config(settings)  # what only the engine can check (provider names)
    print(settings_table())
    warning = sender_warning(settings)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def main() -> None:
    # every command: no full address in a log record at INFO or above (mailsift/logs.py)
    install_masking()
    if not {"worker", "api"} & set(sys.argv[1:2]):
        # client commands: a connection failure is reported once, as one line (errors.py),
        # not also as the Kafka client's own log lines
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run_guarded(lambda: app(standalone_mode=True))


if __name__ == "__main__":  # pragma: no cover
    main()
