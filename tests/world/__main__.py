"""Run a simulated mail world as a process: ``python -m tests.world [options]``.

Prints ONE JSON line on stdout once every server is ready::

    {"nameserver": "127.0.2.1:PORT", "smtp_port": PORT, "control": "http://127.0.0.1:PORT",
     "pid": PID}

then serves until SIGTERM or SIGINT, and exits 0 after closing everything. See
:mod:`tests.world.control` for the HTTP API and ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys

from .control import ControlServer
from .default import bulk_world, default_world
from .runner import World
from .spec import WorldSpec, merge

__all__ = ["build_spec", "main", "parse_args", "serve"]


def _loopback(value: str) -> str:
    if not ipaddress.ip_address(value).is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not a loopback address")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m tests.world", description=__doc__.split("\n")[0])
    p.add_argument(
        "--bulk",
        type=int,
        default=0,
        metavar="N",
        help="add N bulk domains bulk0.test.. (benchmarks)",
    )
    p.add_argument(
        "--bulk-mailboxes",
        type=int,
        default=10,
        metavar="M",
        help="accepted mailboxes user0..user{M-1} per bulk host (default 10)",
    )
    p.add_argument(
        "--bulk-mx-hosts",
        type=int,
        default=4,
        metavar="K",
        help="bulk MX hosts mx{j}.bulk.test at 127.0.3.X (default 4)",
    )
    p.add_argument(
        "--bulk-max-connections",
        type=int,
        default=None,
        metavar="C",
        help="bulk hosts answer 421 to a connection arriving while C are open",
    )
    p.add_argument(
        "--no-default",
        action="store_true",
        help="serve only the bulk domains, not the default world",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay added to every SMTP reply, banner included",
    )
    p.add_argument(
        "--dns-latency-ms", type=float, default=0.0, help="delay added to every DNS answer"
    )
    p.add_argument("--greylist-seconds", type=float, default=2.0)
    p.add_argument("--tarpit-seconds", type=float, default=30.0)
    p.add_argument("--dns-host", type=_loopback, default="127.0.2.1")
    p.add_argument("--dns-port", type=int, default=0)
    p.add_argument("--smtp-port", type=int, default=0)
    p.add_argument("--control-host", type=_loopback, default="127.0.0.1")
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def build_spec(args: argparse.Namespace) -> WorldSpec:
    """The spec the options describe."""
    latency = args.latency_ms / 1000.0
    dns_latency = args.dns_latency_ms / 1000.0
    specs: list[WorldSpec] = []
    if not args.no_default:
        specs.append(
            default_world(
                greylist_seconds=args.greylist_seconds,
                tarpit_seconds=args.tarpit_seconds,
                latency=latency,
                dns_latency=dns_latency,
            )
        )
    if args.bulk > 0:
        specs.append(
            bulk_world(
                args.bulk,
                args.bulk_mailboxes,
                args.bulk_mx_hosts,
                latency,
                dns_latency=dns_latency,
                max_connections=args.bulk_max_connections,
            )
        )
    if not specs:
        raise SystemExit("nothing to serve: --no-default needs --bulk N")
    return specs[0] if len(specs) == 1 else merge(*specs)


async def serve(args: argparse.Namespace) -> None:
    """Start the world and the control API, print the ready line, wait for a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    world = World(
        build_spec(args), dns_host=args.dns_host, dns_port=args.dns_port, smtp_port=args.smtp_port
    )
    await world.start()
    control = ControlServer(world, args.control_host, args.control_port)
    try:
        await control.start()
        ready = {
            "nameserver": world.nameserver,
            "smtp_port": world.smtp_port,
            "control": control.url,
            "pid": os.getpid(),
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await control.stop()
        await world.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
