"""`mailsift validate` as a user runs it: a 10,000-row CSV through the real pipeline."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsift.settings import Settings
from tests.pipeline_support import REPO, WorkerProcess, WorldProcess, pipeline_env, running_world

pytestmark = pytest.mark.stack


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    with running_world("--bulk", "200", "--bulk-mailboxes", "40",
                       "--bulk-mx-hosts", "8") as w:
        yield w


def expected(email: str) -> tuple[str, str]:
    local, _, domain = email.partition("@")
    if not domain:
        return "undeliverable", "syntax"
    if domain.startswith("bulk"):
        n = int(local.removeprefix("User").removeprefix("user"))
        return ("deliverable", "ok") if n < 40 else ("undeliverable", "mailbox_not_found")
    return {"ok.test": ("deliverable", "ok"), "nullmx.test": ("undeliverable", "null_mx")}[domain]


def validate_with_a_worker(env: dict[str, str], src: Path, out: Path, tmp_path: Path, *,
                           timeout: int, extra: tuple[str, ...] = ()
                           ) -> subprocess.CompletedProcess[str]:
    """``mailsift validate SRC -o OUT`` as a user runs it, with one worker running."""
    worker = WorkerProcess(env, tmp_path / f"worker-{out.stem}.log")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mailsift.cli.main", "validate", str(src), "-o", str(out),
             "--timeout", str(timeout), *extra],
            cwd=REPO, env={**os.environ, **env, "COLUMNS": "120"}, capture_output=True,
            text=True, timeout=timeout + 60)
        assert result.returncode == 0, result.stderr[-2000:]
        return result
    finally:
        worker.stop()


def test_validate_10000_row_csv(stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    emails = [f"user{j}@bulk{i}.test" for i in range(200) for j in range(48)]  # 9,600
    emails += ["alice@ok.test", "a@nullmx.test", "not an address"] * 100       # +300
    emails += [e.replace("user", "User") for e in emails[:100]]                # duplicates
    assert len(emails) == 10_000
    src = tmp_path / "list.csv"
    with src.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "Email"])
        writer.writerows([f"row {i}", e] for i, e in enumerate(emails))
    env = pipeline_env(world, MAILSIFT_MX_MAX_CONNECTIONS="8",
                       MAILSIFT_MX_MAX_RCPT_PER_SECOND="1000")
    out = tmp_path / "results.csv"
    result = validate_with_a_worker(env, src, out, tmp_path, timeout=400)
    assert "10000/10000" in result.stderr.replace(",", "")  # the progress bar got there
    assert f"wrote 10000 rows to {out}" in result.stderr.replace("\n", "")
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    # one row per input row, in order, with the input's own columns first, then ours (our
    # `email` named apart from the input's `Email`, which it must not overwrite)
    assert [r["Email"] for r in rows] == emails
    assert [r["name"] for r in rows] == [f"row {i}" for i in range(len(emails))]
    assert [r["mailsift_email"] for r in rows] == emails
    assert list(rows[0]) == ["name", "Email", "mailsift_email", "normalized", "verdict",
                             "reason", "score", "provider", "suggestion", "disposable",
                             "role", "free", "catch_all", "mx", "spf", "dmarc", "dkim",
                             "smtp_code", "smtp_message", "checked_at", "duplicate_of"]
    # the summary: rows by verdict, the top reasons, the elapsed time and the rate
    summary = result.stderr
    assert "summary" in summary and "top reasons" in summary and "rows/s" in summary
    for verdict in ("deliverable", "undeliverable"):
        n = sum(1 for e in emails if expected(e)[0] == verdict)
        assert re.search(rf"^\s*{verdict}\s+{n}\s+{100 * n / len(emails):.1f} %", summary,
                         re.MULTILINE), (verdict, n, summary[-1500:])
    assert all(r["score"].isdigit() for r in rows)
    wrong = [(r["Email"], r["verdict"], r["reason"]) for r in rows
             if (r["verdict"], r["reason"]) != expected(r["Email"])]
    assert not wrong, wrong[:5]
    # duplicates share the verdict of the first spelling, and point at its line (line 1 is
    # the header, so row i is on line i + 2)
    assert rows[-1]["checked_at"] == rows[99]["checked_at"]
    assert rows[-1]["duplicate_of"] == str(99 + 2) and rows[99]["duplicate_of"] == ""
    firsts = {}
    for i, r in enumerate(rows):
        key = r["Email"].lower()
        assert r["duplicate_of"] == ("" if key not in firsts else str(firsts[key] + 2)), i
        firsts.setdefault(key, i)



def test_validate_keeps_one_row_per_line_whatever_a_line_holds(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """NUL, a 10 kB line, bytes that are not UTF-8, and CR, VT or U+2028 inside a line: each
    line is one row with a verdict, the job completes, and no DATA is ever sent."""
    import json

    lines = [b"alice@ok.test", b"a\x00b@ok.test", b"x" * 10_000 + b"@ok.test",
             b"\xff\xfe@ok.test", b"al\rice@ok.test", b"bob\x0b@ok.test",
             "carol\u2028@ok.test".encode(), b"alice@ok.test\r", b"a@nullmx.test"]
    src = tmp_path / "list.txt"
    src.write_bytes(b"\n".join(lines) + b"\n")
    env = pipeline_env(world)
    out = tmp_path / "results.jsonl"
    validate_with_a_worker(env, src, out, tmp_path, timeout=120)
    rows = [json.loads(line) for line in out.read_text().split("\n") if line]
    assert len(rows) == len(lines)
    assert [(r["verdict"], r["reason"]) for r in rows] == [
        ("deliverable", "ok")] + [("undeliverable", "syntax")] * 6 + [
        ("deliverable", "ok"), ("undeliverable", "null_mx")]
    assert rows[4]["email"] == "al\rice@ok.test" and rows[7]["email"] == "alice@ok.test"
    assert [r["duplicate_of"] for r in rows] == [""] * 7 + [1, ""]  # the first line's
    assert world.stats()["data_commands"] == 0

    # --verdict: the rows of those verdicts only, still in input order
    only = tmp_path / "undeliverable.jsonl"
    again = validate_with_a_worker(env, src, only, tmp_path, timeout=120,
                                   extra=("--verdict", "Undeliverable,unknown"))
    kept = [json.loads(line) for line in only.read_text().split("\n") if line]
    assert [r["email"] for r in kept] == [r["email"] for r in rows
                                          if r["verdict"] == "undeliverable"]
    assert "(verdicts undeliverable, unknown)" in again.stderr.replace("\n", "")
    bad = subprocess.run([sys.executable, "-m", "mailsift.cli.main", "validate", str(src),
                          "--verdict", "good"], cwd=REPO, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--verdict: expected a comma list" in bad.stderr
