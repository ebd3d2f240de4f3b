"""Throughput of the verification engine alone (no Kafka) against the simulated world.

Starts ``python -m tests.world --bulk N`` as a separate process (so the world and the engine
each get a core), then verifies ``domains × per_domain`` addresses — most existing, some
not — once per injected latency and politeness profile, and reports addresses/second and
SMTP connections opened per address. Traffic goes only to 127.0.0.0/8.

    .venv/bin/python -m bench.engine_throughput --domains 200 --per-domain 5
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from checks import Engine, EngineConfig
from checks.model import Verdict

PROFILES = {
    # the production defaults: 2 connections and 5 RCPT/s per MX host
    "polite": {"mx_max_connections": 2, "mx_rcpt_per_second": 5.0},
    # the engine's own ceiling: limits far above what the world can take
    "unthrottled": {"mx_max_connections": 64, "mx_rcpt_per_second": 100000.0},
}


@dataclass
class Run:
    profile: str
    latency_ms: float
    addresses: int
    seconds: float
    connections: int
    deliverable: int
    undeliverable: int
    data_commands: int

    def line(self) -> str:
        return (f"{self.profile:<12} latency {self.latency_ms:>4.0f} ms  {self.addresses} addr "
                f"in {self.seconds:6.2f} s = {self.addresses / self.seconds:8.1f} addr/s  "
                f"connections/addr {self.connections / self.addresses:.3f}  "
                f"(deliverable {self.deliverable}, undeliverable {self.undeliverable}, "
                f"DATA {self.data_commands})")


def start_world(domains: int, mailboxes: int, mx_hosts: int, latency_ms: float
                ) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.world", "--no-default", "--bulk", str(domains),
         "--bulk-mailboxes", str(mailboxes), "--bulk-mx-hosts", str(mx_hosts),
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def world_stats(control: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{control}/stats", timeout=10) as resp:  # loopback only
        data: dict[str, object] = json.loads(resp.read())
        return data


def total(stats: dict[str, object], key: str) -> int:
    hosts = stats.get("mx", {})
    assert isinstance(hosts, dict)
    return sum(int(h.get(key, 0)) for h in hosts.values())


async def run_once(info: dict[str, object], profile: str, latency_ms: float,
                   addresses: list[str]) -> Run:
    ns_host, ns_port = str(info["nameserver"]).rsplit(":", 1)
    config = EngineConfig(
        nameservers=((ns_host, int(ns_port)),), smtp_port=int(str(info["smtp_port"])),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), allow_test_tld=True,
        connect_timeout=5, command_timeout=5, session_timeout=600,
        **PROFILES[profile],  # type: ignore[arg-type]
    )
    engine = Engine(config)
    before = world_stats(str(info["control"]))
    started = time.perf_counter()
    results = await engine.verify_many(addresses)
    seconds = time.perf_counter() - started
    await engine.aclose()
    after = world_stats(str(info["control"]))
    return Run(
        profile, latency_ms, len(addresses), seconds,
        total(after, "connections") - total(before, "connections"),
        sum(r.verdict is Verdict.DELIVERABLE for r in results),
        sum(r.verdict is Verdict.UNDELIVERABLE for r in results),
        int(str(after.get("data_commands", 0))),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--per-domain", type=int, default=5)
    parser.add_argument("--mx-hosts", type=int, default=8)
    parser.add_argument("--latency-ms", default="0,20")
    parser.add_argument("--profiles", default="polite,unthrottled")
    args = parser.parse_args()
    # addresses: user0.. exist (the world accepts `per_domain - 1` of them), one does not
    addresses = [f"user{j}@bulk{i}.test" for i in range(args.domains)
                 for j in range(args.per_domain)]
    for latency in (float(x) for x in args.latency_ms.split(",")):
        proc, info = start_world(args.domains, args.per_domain - 1, args.mx_hosts, latency)
        try:
            for profile in args.profiles.split(","):
                print(asyncio.run(run_once(info, profile, latency, addresses)).line(),
                      flush=True)
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
