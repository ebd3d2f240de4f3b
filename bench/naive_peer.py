"""The naive peer mailsift is measured against: a plain asyncio script.

One connection per address, ``Semaphore(100)``, no cache, no politeness: resolve the MX
and its A record, connect, EHLO, MAIL FROM, RCPT TO, QUIT. ``250`` means deliverable,
``550`` undeliverable; anything else (``421`` above the host's connection limit, timeouts)
is an answer it cannot give. This is what issue #14 compared with; it only ever talks to
the simulated world on 127.0.0.0/8.

    .venv/bin/python -m bench.naive_peer --domains 200   # its own world, then exits
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import aiosmtplib
import dns.asyncresolver
import dns.nameserver

__all__ = ["NaiveResult", "naive_run"]


@dataclass
class NaiveResult:
    addresses: int
    seconds: float
    correct: int  # verdicts that match the world
    wrong: int  # no verdict (421, timeout) or a wrong one

    def line(self) -> str:
        return (f"naive peer: {self.addresses} addr in {self.seconds:6.1f} s = "
                f"{self.addresses / self.seconds:7.1f} addr/s, correct {self.correct} "
                f"({self.correct / self.seconds:6.1f} correct/s), wrong or none {self.wrong}")


async def naive_run(nameserver: str, smtp_port: int, emails: list[str],
                    expected: dict[str, str], *, concurrency: int = 100) -> NaiveResult:
    """Check ``emails`` the naive way; ``expected`` maps address → world verdict."""
    host, _, port = nameserver.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, int(port))]
    resolver.cache = None
    limit = asyncio.Semaphore(concurrency)

    async def one(email: str) -> str:
        async with limit:
            domain = email.rpartition("@")[2]
            try:
                mx = await resolver.resolve(domain, "MX")
                target = str(sorted(mx, key=lambda r: r.preference)[0].exchange)
                ip = (await resolver.resolve(target, "A"))[0].address
                client = aiosmtplib.SMTP(hostname=ip, port=smtp_port, timeout=10,
                                         start_tls=False, use_tls=False)
                await client.connect()
                try:
                    await client.ehlo()
                    await client.mail("verify@naive.invalid")
                    code, _ = await client.rcpt(email)
                finally:
                    client.close()
            except aiosmtplib.SMTPResponseException as exc:
                code = exc.code
            except Exception:  # noqa: BLE001 - a naive script gives up
                return "unknown"
            return {250: "deliverable", 550: "undeliverable"}.get(code, "unknown")

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(e) for e in emails))
    seconds = time.perf_counter() - started
    correct = sum(a == expected[e] for e, a in zip(emails, answers, strict=True))
    return NaiveResult(len(emails), seconds, correct, len(emails) - correct)


def main() -> None:
    from bench.pipeline_throughput import bulk_addresses, bulk_expected
    from tests.pipeline_support import WorldProcess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--per-domain", type=int, default=25)
    parser.add_argument("--mailboxes", type=int, default=20)
    parser.add_argument("--mx-hosts", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--world-max-connections", type=int, default=2)
    args = parser.parse_args()
    emails = bulk_addresses(args.domains, args.per_domain)
    world = WorldProcess("--no-default", "--bulk", str(args.domains), "--bulk-mailboxes",
                         str(args.mailboxes), "--bulk-mx-hosts", str(args.mx_hosts),
                         "--latency-ms", str(args.latency_ms),
                         "--bulk-max-connections", str(args.world_max_connections))
    try:
        result = asyncio.run(naive_run(world.info["nameserver"], world.info["smtp_port"],
                                       emails, bulk_expected(emails, args.mailboxes)))
    finally:
        world.stop()
    print(result.line())


if __name__ == "__main__":
    main()
