"""Peak RSS of ``mailsift validate`` by list length (issue #9: flat, not growing with it).

For each size it writes a text list of that many lines (``user{j}@bulk{i}.test`` over a
bulk world of ``tests/world``, 10 per domain, 9 of them existing, shuffled), runs one warm
worker and ``mailsift validate LIST -o results.csv`` as a user would, and reports the
CLI's peak RSS (the kernel's ``VmHWM`` of the process, see :func:`sample_rss`) and its
RSS over the run, its wall time, and whether every row came out in order. Only
127.0.0.0/8 is contacted.

    .venv/bin/python -m bench.validate_memory --lines 10000,100000 --before /tmp/before
    .venv/bin/python -m bench.validate_memory --lines 10000,100000,1000000 --syntax-only
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline_throughput import warm_up
from tests.pipeline_support import REPO, WorkerProcess, WorldProcess, pipeline_env, settings_for


def run(lines: int, rcpt_per_second: int, work: Path, cli_tree: Path = REPO, *,
        syntax_only: bool = False) -> str:
    domains = 1 if syntax_only else max(1, lines // 10)
    if syntax_only:  # intake alone decides them: a fast route through the pipeline
        emails = [f"not an address {i}" for i in range(lines)]
    else:
        emails = [f"user{j}@bulk{i}.test" for i in range(domains) for j in range(10)][:lines]
    random.Random(9).shuffle(emails)
    src = work / f"list-{lines}.txt"
    src.write_text("\n".join(emails) + "\n")
    out = work / f"results-{lines}.csv"
    world = WorldProcess("--no-default", "--bulk", str(domains), "--bulk-mailboxes", "9",
                         "--bulk-mx-hosts", "20")
    worker: WorkerProcess | None = None
    try:
        env = pipeline_env(world, MAILSIFT_MX_MAX_RCPT_PER_SECOND=str(rcpt_per_second))
        worker = WorkerProcess(env, work / f"worker-{lines}.log")
        asyncio.run(warm_up(settings_for(env), domains, 1, timeout=180))
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailsift.cli.main", "validate", str(src), "-o", str(out)],
            cwd=cli_tree, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        samples, peak = sample_rss(proc)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - started
    finally:
        if worker is not None:
            worker.stop()
        world.stop()
    if proc.returncode != 0:
        return f"{lines:>9,} lines: validate exited {proc.returncode}"
    with out.open(newline="") as f:
        rows = [r["email"] for r in csv.DictReader(f)]
    in_order = rows == emails
    label = ("" if cli_tree == REPO else f"[{cli_tree}] ") + ("syntax-only " if syntax_only
                                                              else "")
    quarters = " ".join(f"{mib:.0f}" for mib in by_quarter(samples))
    return (f"{label}{lines:>9,} lines: validate peak RSS {peak:6.1f} MiB "
            f"(ru_maxrss {usage.ru_maxrss / 1024:.0f}), "
            f"{took:6.1f} s, {len(rows):,} rows{' in order' if in_order else ' WRONG'}; "
            f"RSS MiB at 1/4, 1/2, 3/4, end: {quarters}")


def sample_rss(proc: subprocess.Popen[bytes], every: float = 0.1) -> tuple[list[float], float]:
    """The process's RSS (MiB) every ``every`` seconds until it exits (it is not reaped
    here), and its peak: the kernel's high-water mark ``VmHWM`` as last read.

    Not ``ru_maxrss``: for a child, Linux counts in the memory of the parent it was forked
    from (``exec`` keeps the old image's high-water mark), and this parent holds the whole
    list, so ``ru_maxrss`` grew with the list however little the CLI used.
    """
    samples: list[float] = []
    peak = 0.0
    while True:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except FileNotFoundError:
            return samples, peak
        if "VmRSS" not in fields:  # a zombie: it has exited
            return samples, peak
        samples.append(int(fields["VmRSS"].split()[0]) / 1024)
        peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
        time.sleep(every)


def by_quarter(samples: list[float]) -> list[float]:
    """The highest sample of each quarter of the run.

    >>> by_quarter([1, 2, 3, 4, 5, 6, 7, 8])
    [2, 4, 6, 8]
    """
    n = len(samples)
    if n < 4:
        return samples
    return [max(samples[i * n // 4:(i + 1) * n // 4]) for i in range(4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="10000,100000",
                        help="comma list of list lengths")
    parser.add_argument("--rcpt-per-second", type=int, default=200,
                        help="MAILSIFT_MX_MAX_RCPT_PER_SECOND for the worker")
    parser.add_argument("--syntax-only", action="store_true",
                        help="lines that are no address (each gets its syntax verdict in "
                             "intake, no SMTP): long lists in minutes")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="also run the CLI of another checkout (same worker and lists)")
    args = parser.parse_args()
    trees = ([args.before.resolve()] if args.before else []) + [REPO]
    with tempfile.TemporaryDirectory(prefix="mailsift-bench-") as tmp:
        for n in (int(x) for x in args.lines.split(",")):
            for tree in trees:
                print(run(n, args.rcpt_per_second, Path(tmp), tree,
                          syntax_only=args.syntax_only), flush=True)


if __name__ == "__main__":
    main()
