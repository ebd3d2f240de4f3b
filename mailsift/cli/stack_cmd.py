"""``mailsift stack up|down|status``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mailsift.settings import load_settings
from mailsift.stack import ServiceStatus, stack_down, stack_status, stack_up

app = typer.Typer(help="Run the local stack of real services (Kafka/Tansu, Postgres, Redis, "
                  "RabbitMQ) on 127.0.0.1, data under MAILSIFT_STACK_DIR.",
                  no_args_is_help=True)
console = Console(highlight=False)

_STYLE = {"started": "green", "running": "green", "stopped": "yellow",
          "not running": "dim", "dead": "red", "not answering": "red"}


def _show(rows: list[ServiceStatus]) -> None:
    table = Table(show_header=True, header_style="bold")
    for col in ("service", "state", "pid", "url"):
        table.add_column(col)
    for r in rows:
        style = _STYLE.get(r.state, "")
        table.add_row(r.name, f"[{style}]{r.state}[/]", str(r.pid or ""), r.url)
    console.print(table)


@app.command()
def up() -> None:
    """Start every service not running yet; wait until each answers; print the URLs."""
    rows = stack_up(load_settings())
    _show(rows)


@app.command()
def down() -> None:
    """Stop exactly the processes `stack up` started (by recorded PID)."""
    _show(stack_down(load_settings()))


@app.command()
def status() -> None:
    """Show which services run and answer. Exit code 1 when any is not running."""
    rows = stack_status(load_settings())
    _show(rows)
    if any(r.state != "running" for r in rows):
        raise typer.Exit(1)
