"""End-to-end throughput of the pipeline (Kafka + workers) against the simulated world.

The default world is the one issue #14 measured: 4,000 domains × 25 addresses (20
existing) over 20 shared MX hosts, 20 ms per SMTP reply, hosts that answer ``421`` above
2 simultaneous connections, the list shuffled (not grouped by domain).

Starts a bulk world (``python -m tests.world --bulk N``) and ``mailsift worker`` processes
on a fresh private pipeline (own topics and consumer group, see
:func:`tests.pipeline_support.pipeline_env`) on the shared local stack, once per worker
count. After a warm-up job proves every worker has joined the group, it submits
``domains × per_domain`` addresses as one job and times submit → last verdict on the
verdicts topic. It reports addresses/second, the verdict counts, the world's counters and
each worker's peak RSS. Traffic goes only to 127.0.0.0/8.

Needs the local stack (``mailsift stack up``).

    .venv/bin/python -m bench.pipeline_throughput --workers 1,2
    .venv/bin/python -m bench.pipeline_throughput --rcpt-per-second 5 --domains 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from checks.politeness import RcptPacing
from mailsift.settings import Settings
from streams.client import new_job_id, submit_job
from tests.pipeline_support import (
    JobOutcome,
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    free_port,
    pipeline_env,
    settings_for,
    wait_for_job,
)

T = TypeVar("T")


@dataclass
class WorkerReport:
    pid: int
    verdicts: int  # verdicts of the timed job this worker produced
    peak_rss_kib: int  # VmHWM
    cpu_seconds: float  # user + system during the timed job
    rss_start_kib: int = 0  # VmRSS before the timed job
    rss_end_kib: int = 0  # VmRSS after it
    #: RCPT permits it gave up as too late (None: its /metrics does not say)
    late_permits: int | None = None


@dataclass
class GridUse:
    """How the hosts' RCPT permit grids were used (seconds from the submit's start).

    ``bound`` is the politeness bound (RCPTs over hosts × rate); the run's time beyond it
    splits into the wait for each host's first RCPT, the gaps in each host's RCPTs beyond
    its grid, and the time after its last one. ``tightest`` is the shortest time in which
    any host saw rate + 1 RCPTs (more than 1 s: no rolling second over the rate).
    """

    bound: float
    first: float  # mean over hosts
    gaps: float  # mean over hosts
    after_last: float  # mean over hosts
    tightest: float

    @classmethod
    def of(cls, hosts: list[list[float]], rate: float, interval: float, started: float,
           seconds: float) -> GridUse | None:
        hosts = [sorted(t) for t in hosts if t]
        if not hosts or rate <= 0:
            return None
        k = int(rate)
        spans = [t[i + k] - t[i] for t in hosts for i in range(len(t) - k)]
        first = [t[0] - started for t in hosts]
        gaps = [(t[-1] - t[0]) - (len(t) - 1) * interval for t in hosts]
        after = [seconds - (t[-1] - started) for t in hosts]
        n = len(hosts)
        return cls(sum(len(t) for t in hosts) / (n * rate), sum(first) / n, sum(gaps) / n,
                   sum(after) / n, min(spans, default=float("inf")))

    def line(self, seconds: float) -> str:
        return (f"  RCPT grid: bound {self.bound:.1f} s = {100 * self.bound / seconds:.1f} % "
                f"of the run; per host (mean) first RCPT at {self.first:.1f} s, gaps beyond "
                f"the grid {self.gaps:.1f} s, after the last {self.after_last:.1f} s; "
                f"tightest rate+1 RCPTs of a host in {self.tightest:.3f} s")


@dataclass
class Run:
    workers: int
    latency_ms: float
    addresses: int
    submit_seconds: float  # producing the job's submissions
    first_verdict_seconds: float
    seconds: float  # submit → last verdict
    completed_seconds: float  # submit → "completed" job event seen
    counts: dict[str, int]
    expected: dict[str, int]
    retried: int  # verdicts that needed more than one attempt
    connections: int
    rcpt: int
    max_simultaneous: int
    max_rcpt_per_second: int
    rejected_connections: int
    data_commands: int
    world_cpu_seconds: float  # during the timed job
    worker_reports: list[WorkerReport] = field(default_factory=list)
    starttls: int = 0
    dns_queries: int = 0
    domains: int = 0
    max_rcpt_per_5s: int = 0
    #: CPU seconds of the other processes during the timed job (cli = this process)
    other_cpu: dict[str, float] = field(default_factory=dict)
    grid: GridUse | None = None
    #: share of all cores busy during the timed job (every process on the machine)
    machine_busy: float | None = None

    def lines(self) -> list[str]:
        ok = "ok" if self.counts == self.expected else f"MISMATCH, expected {self.expected}"
        out = [
            f"{self.workers} worker(s)  latency {self.latency_ms:.0f} ms  {self.addresses} addr "
            f"in {self.seconds:6.1f} s = {self.addresses / self.seconds:6.1f} addr/s  "
            f"(submit {self.submit_seconds:.1f} s, first verdict {self.first_verdict_seconds:.1f}"
            f" s, completed {self.completed_seconds:.1f} s)",
            f"  verdicts {dict(sorted(self.counts.items()))} [{ok}], "
            f"{self.retried} needed a retry",
            f"  world: DATA {self.data_commands}, connections/addr "
            f"{self.connections / self.addresses:.3f} ({self.connections} conn, {self.rcpt} RCPT), "
            f"max simultaneous per MX {self.max_simultaneous}, max RCPT/s per MX "
            f"{self.max_rcpt_per_second} (per 5 s {self.max_rcpt_per_5s}), rejected "
            f"{self.rejected_connections}, "
            f"CPU {self.world_cpu_seconds:.1f} s",
        ]
        out.append(
            f"  RCPT/connection {self.rcpt / max(1, self.connections):.1f}, TLS handshakes "
            f"{self.starttls}, DNS queries/domain {self.dns_queries / max(1, self.domains):.2f}")
        for w in self.worker_reports:
            out.append(f"  worker {w.pid}: {w.verdicts} verdicts, peak RSS "
                       f"{w.peak_rss_kib / 1024:.0f} MiB (RSS {w.rss_start_kib / 1024:.0f} → "
                       f"{w.rss_end_kib / 1024:.0f} MiB), CPU {w.cpu_seconds:.1f} s = "
                       f"{1000 * w.cpu_seconds / self.addresses:.2f} ms/addr, late permits "
                       f"{'n/a' if w.late_permits is None else w.late_permits}")
        own = sum(w.cpu_seconds for w in self.worker_reports) + self.other_cpu.get("cli", 0.0)
        parts = ", ".join(f"{name} {1000 * cpu / self.addresses:.2f}"
                          for name, cpu in self.other_cpu.items())
        out.append(f"  CPU ms/addr: workers+cli {1000 * own / self.addresses:.2f}; {parts}")
        if self.machine_busy is not None:
            out.append(f"  machine: {self.machine_busy:.0%} of its {os.cpu_count()} cores busy "
                       "during the timed job")
        if self.grid is not None:
            out.append(self.grid.line(self.seconds))
        return out


def bulk_addresses(domains: int, per_domain: int, *, shuffle: bool = True) -> list[str]:
    """``user{j}@bulk{i}.test``; shuffled (seed 14) unless ``shuffle`` is false."""
    emails = [f"user{j}@bulk{i}.test" for i in range(domains) for j in range(per_domain)]
    if shuffle:
        random.Random(14).shuffle(emails)
    return emails


def bulk_expected(emails: list[str], mailboxes: int) -> dict[str, str]:
    """The world's verdict per address: ``user{j}`` exists when j < ``mailboxes``."""
    return {e: "deliverable" if int(e.split("@")[0][4:]) < mailboxes else "undeliverable"
            for e in emails}


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in KiB, 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB (0 if it is gone)."""
    return status_kib(pid, "VmRSS")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its live descendants (Postgres backends, beam…)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        todo.extend(children.get(p, []))
    return total


def stack_pids(settings: Settings) -> dict[str, int]:
    """PIDs of the local stack's services (broker, Redis, Postgres, RabbitMQ)."""
    from mailsift.stack.manager import stack_status

    names = {"kafka": "broker", "redis": "redis", "postgres": "postgres",
             "rabbitmq": "rabbitmq"}
    return {names[s.name]: s.pid for s in stack_status(settings)
            if s.name in names and s.pid is not None}


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a live process, in KiB (0 if it is gone)."""
    return status_kib(pid, "VmHWM")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def late_permits(port: int) -> int | None:
    """The worker's ``mailsift_rcpt_permits_late_total`` (None if it has none)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("mailsift_rcpt_permits_late_total "):
            return int(float(line.split()[1]))
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_world_stats(world: WorldProcess) -> None:
    req = urllib.request.Request(f"{world.info['control']}/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):  # loopback only
        pass


def private_redis_url(db: int) -> str:
    """The configured Redis server (``MAILSIFT_REDIS_URL``), logical database ``db``."""
    parts = urlsplit(settings_for({}).redis_url)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def clear_caches(url: str, *, everything: bool = False) -> int:
    """Delete the shared DNS and catch-all cache entries of every mailsift prefix in ``url``
    (with ``everything``, every mailsift key: leases and job records too).

    Between the warm-up and the timed job the leases stay: the warm-up's pooled sessions
    are still open, and deleting their leases would let another worker open more
    connections than the limit.
    """
    from sinks.redis_client import redis_client

    client = redis_client(url)
    patterns = ("mailsift*",) if everything else ("mailsift*dns:*", "mailsift*catchall:*")
    try:
        keys = [k for pattern in patterns
                async for k in client.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i:i + 1000])
        return len(keys)
    finally:
        await client.aclose()


async def watched(coro: Coroutine[Any, Any, T], procs: list[WorkerProcess]) -> T:
    """Await ``coro``, but fail at once (not at its timeout) if a worker process dies."""
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            dead = [p for p in procs if not p.alive()]
            if dead:
                raise RuntimeError(f"worker {dead[0].pid} exited with {dead[0].proc.returncode};"
                                   f" see {dead[0].log_path}")
    finally:
        task.cancel()


async def warm_up(settings: Settings, domains: int, workers: int, timeout: float) -> int:
    """Submit small jobs until verdicts came from every worker; return the jobs submitted.

    One address on each of 8 domains (spread over the partitions of the by-domain topic);
    when a worker has produced a verdict it holds partitions in the group's current
    generation, so once all have, the group has settled.
    """
    deadline = time.monotonic() + timeout
    step = max(1, domains // 8)
    emails = [f"user0@bulk{i}.test" for i in range(0, domains, step)][:8]
    jobs = 0
    while True:
        jobs += 1
        job = await submit_job(settings, emails)
        outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                     timeout=max(1.0, deadline - time.monotonic()))
        if len({v.worker for v in outcome.verdicts}) >= workers:
            return jobs
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len({v.worker for v in outcome.verdicts})} of "
                               f"{workers} workers produced verdicts after {timeout} s")
        await asyncio.sleep(1.0)


async def timed_job(settings: Settings, emails: list[str], timeout: float
                    ) -> tuple[JobOutcome, float, float, float, float, float]:
    """Submit ``emails`` as one job while following it; return the outcome and timings.

    Timings (seconds since the submit started): submit done, first verdict, last verdict,
    ``completed`` seen; then the start itself (``time.perf_counter``: CLOCK_MONOTONIC on
    Linux, the clock of the world's RCPT times).
    """
    job = new_job_id()
    expected = {dedupe_key(e) for e in emails}
    marks: dict[str, float] = {}

    async def on_verdict(seen: int) -> None:
        now = time.perf_counter()
        marks.setdefault("first", now)
        if seen == len(expected):
            marks.setdefault("last", now)

    started = time.perf_counter()

    async def submit() -> None:
        await submit_job(settings, emails, job_id=job)
        marks["submitted"] = time.perf_counter()

    follower = asyncio.create_task(wait_for_job(settings, job, expected, timeout=timeout,
                                                on_verdict=on_verdict))
    try:
        await submit()
        outcome = await follower
    finally:
        follower.cancel()
    done = time.perf_counter()
    return (outcome, marks["submitted"] - started, marks["first"] - started,
            marks["last"] - started, done - started, started)


def world_totals(stats: dict[str, Any]) -> dict[str, int]:
    from tests.world.smtp_server import max_rate

    hosts: dict[str, dict[str, Any]] = stats["mx"]
    return {
        "max_rcpt_per_5s": max((max_rate(list(h.get("rcpt_times", [])), 5.0)
                                for h in hosts.values()), default=0),
        "connections": sum(int(h["connections"]) for h in hosts.values()),
        "rcpt": sum(int(h["rcpt"]) for h in hosts.values()),
        "rejected": sum(int(h["rejected_connections"]) for h in hosts.values()),
        "max_simultaneous": max((int(h["max_simultaneous"]) for h in hosts.values()),
                                default=0),
        "max_rcpt_per_second": max((int(h["max_rcpt_per_second"]) for h in hosts.values()),
                                   default=0),
        "data": int(stats["data_commands"]),
        "starttls": sum(int(h.get("starttls", 0)) for h in hosts.values()),
        "dns": int(stats.get("dns", {}).get("total", 0)),
    }


def stop_all(procs: list[WorkerProcess], world: WorldProcess) -> None:
    """Stop every worker, then the world, by PID; one failing stop does not skip the rest."""
    if procs:
        try:
            procs[0].stop()
        finally:
            stop_all(procs[1:], world)
    else:
        world.stop()


def start_profiler(pid: int, out_dir: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``out_dir/worker-PID.txt`` (collapsed stacks) until
    SIGINT."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate",
                             "200", "--output", str(out_dir / f"worker-{pid}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def world_args(args: argparse.Namespace) -> list[str]:
    out = ["--no-default", "--bulk", str(args.domains), "--bulk-mailboxes",
           str(args.mailboxes), "--bulk-mx-hosts", str(args.mx_hosts),
           "--latency-ms", str(args.latency_ms)]
    if args.world_max_connections > 0:
        out += ["--bulk-max-connections", str(args.world_max_connections)]
    return out


def run_peer(args: argparse.Namespace) -> str:
    """The naive asyncio script on a fresh world of the same shape."""
    from bench.naive_peer import naive_run

    emails = bulk_addresses(args.domains, args.per_domain, shuffle=args.shuffle)
    world = WorldProcess(*world_args(args))
    try:
        result = asyncio.run(naive_run(world.info["nameserver"], world.info["smtp_port"],
                                       emails, bulk_expected(emails, args.mailboxes)))
    finally:
        world.stop()
    return result.line()


def run_once(args: argparse.Namespace, workers: int, log_dir: Path,
             tree: Path | None = None) -> Run:
    emails = bulk_addresses(args.domains, args.per_domain, shuffle=args.shuffle)
    expected = {"deliverable": args.domains * args.mailboxes,
                "undeliverable": args.domains * (args.per_domain - args.mailboxes)}
    world = WorldProcess(*world_args(args))
    procs: list[WorkerProcess] = []
    try:
        overrides = {} if args.sinks else {"MAILSIFT_DATABASE_URL": "", "MAILSIFT_AMQP_URL": ""}
        if args.redis_db is not None:
            overrides["MAILSIFT_REDIS_URL"] = private_redis_url(args.redis_db)
            asyncio.run(clear_caches(overrides["MAILSIFT_REDIS_URL"], everything=True))
        env = pipeline_env(world, MAILSIFT_MX_MAX_CONNECTIONS=str(args.max_connections),
                           MAILSIFT_MX_MAX_RCPT_PER_SECOND=str(args.rcpt_per_second),
                           **overrides)
        settings = settings_for(env)
        ports = [free_port() for _ in range(workers)]
        for i, port in enumerate(ports):  # its /metrics tells the late permits
            procs.append(WorkerProcess({**env, "MAILSIFT_WEB_PORT": str(port)},
                                       log_dir / f"w{workers}-{i}.log",
                                       **({"tree": tree} if tree else {})))
        asyncio.run(watched(warm_up(settings, args.domains, workers, timeout=180), procs))
        if args.redis_db is not None:  # the warm-up filled caches for a few domains
            asyncio.run(clear_caches(env["MAILSIFT_REDIS_URL"]))
        reset_world_stats(world)
        spies = [start_profiler(p.pid, args.profile) for p in procs] if args.profile else []
        services = stack_pids(settings)
        cpu_before = {pid: cpu_seconds(pid) for pid in [*(p.pid for p in procs), world.proc.pid]}
        rss_before = {p.pid: rss_kib(p.pid) for p in procs}
        other_before = {name: tree_cpu_seconds(pid) for name, pid in services.items()}
        cli_before = time.process_time()
        ticks_before = machine_ticks()
        outcome, submit_s, first_s, last_s, completed_s, started = asyncio.run(
            watched(timed_job(settings, emails, timeout=args.timeout), procs))
        ticks_after = machine_ticks()
        busy = ((ticks_after[0] - ticks_before[0])
                / max(1, ticks_after[1] - ticks_before[1]))
        other_cpu = {"cli": time.process_time() - cli_before}
        other_cpu.update({name: tree_cpu_seconds(pid) - other_before[name]
                          for name, pid in services.items()})
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        stats = world.stats(times=True)
        totals = world_totals(stats)
        rate = args.rcpt_per_second
        grid = GridUse.of([list(h.get("rcpt_times", [])) for h in stats["mx"].values()],
                          rate, RcptPacing.for_rate(rate).interval, started, last_s)
        world_cpu = cpu_seconds(world.proc.pid) - cpu_before[world.proc.pid]
        final = outcome.final_by_key()
        counts: dict[str, int] = {}
        for v in final.values():
            counts[v.verdict] = counts.get(v.verdict, 0) + 1
        by_worker: dict[str, int] = {}
        for v in final.values():
            by_worker[v.worker or "?"] = by_worker.get(v.worker or "?", 0) + 1
        reports = []
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"worker {p.pid} died; see {p.log_path}")
            verdicts = sum(n for w, n in by_worker.items() if w.endswith(f":{p.pid}"))
            reports.append(WorkerReport(p.pid, verdicts, peak_rss_kib(p.pid),
                                        cpu_seconds(p.pid) - cpu_before[p.pid],
                                        rss_before[p.pid], rss_kib(p.pid),
                                        late_permits(ports[procs.index(p)])))
        return Run(
            workers, args.latency_ms, len(emails), submit_s, first_s, last_s, completed_s,
            counts, expected, sum(v.attempt > 1 for v in final.values()),
            totals["connections"], totals["rcpt"], totals["max_simultaneous"],
            totals["max_rcpt_per_second"], totals["rejected"], totals["data"], world_cpu,
            reports, totals["starttls"], totals["dns"], args.domains,
            max_rcpt_per_5s=totals["max_rcpt_per_5s"], other_cpu=other_cpu, grid=grid,
            machine_busy=busy,
        )
    finally:
        stop_all(procs, world)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=4000)
    parser.add_argument("--per-domain", type=int, default=25, help="addresses per domain")
    parser.add_argument("--mailboxes", type=int, default=20,
                        help="of those, how many exist (user0.. ; the rest get 550 5.1.1)")
    parser.add_argument("--mx-hosts", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--world-max-connections", type=int, default=2,
                        help="hosts answer 421 above this many connections (0 = no limit)")
    parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                        help="shuffle the list (default) instead of grouping it by domain")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts")
    parser.add_argument("--max-connections", type=int, default=2,
                        help="MAILSIFT_MX_MAX_CONNECTIONS (production default 2)")
    parser.add_argument("--rcpt-per-second", type=float, default=200.0,
                        help="MAILSIFT_MX_MAX_RCPT_PER_SECOND (production default 5)")
    parser.add_argument("--sinks", action=argparse.BooleanOptionalAction, default=True,
                        help="run the Postgres sink and RabbitMQ bridge stages in the workers "
                             "(as configured; --no-sinks disables both)")
    parser.add_argument("--redis-db", type=int, default=14,
                        help="private Redis logical database, emptied of mailsift* keys "
                             "before each run (cold DNS/catch-all caches, and politeness "
                             "leases not shared with other pipelines on the stack, whose bulk "
                             "worlds use the same MX addresses); -1 = the configured one, "
                             "as is")
    parser.add_argument("--before", type=Path, default=None, metavar="TREE",
                        help="first run the workers from TREE (a checkout of an earlier "
                             "commit, e.g. `git worktree add /tmp/before b19c56d`) for a "
                             "before/after comparison in the same run")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record each worker with py-spy during the timed job "
                             "(collapsed stacks in DIR)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the naive asyncio peer (bench.naive_peer) on the same "
                             "world shape first")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for the timed job")
    args = parser.parse_args()
    if args.redis_db < 0:
        args.redis_db = None
    print(f"{args.domains} domains × {args.per_domain} addresses ({args.mailboxes} exist) over "
          f"{args.mx_hosts} MX hosts (421 above {args.world_max_connections} connections), "
          f"{'shuffled' if args.shuffle else 'grouped by domain'}, politeness "
          f"{args.max_connections} connections and "
          f"{args.rcpt_per_second:g} RCPT/s per MX, sinks {'on' if args.sinks else 'off'}, "
          + ("shared Redis caches" if args.redis_db is None
             else f"cold caches in Redis db {args.redis_db}"),
          flush=True)
    if args.peer:
        print(run_peer(args), flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="mailsift-bench-"))
    trees: list[tuple[str, Path | None]] = [("after", None)]
    if args.before is not None:
        trees.insert(0, (f"before ({args.before})", args.before.resolve()))
    for label, tree in trees:
        for workers in (int(x) for x in args.workers.split(",")):
            try:
                run = run_once(args, workers, log_dir, tree)
            except BaseException:
                print(f"worker logs kept in {log_dir}", flush=True)
                raise
            print(f"[{label}] " + "\n".join(run.lines()), flush=True)
    shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
