"""Every command that needs a service says so in one line when the service is not there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = str(REPO / "samples" / "demo-list.txt")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return


PORT = closed_port()
DOWN = {
    "MAILSIFT_KAFKA_BROKER": f"kafka://127.0.0.1:{PORT}",
    "MAILSIFT_REDIS_URL": f"redis://127.0.0.1:{PORT}/0",
    "MAILSIFT_DATABASE_URL": f"postgresql://mailsift@127.0.0.1:{PORT}/mailsift",
    "MAILSIFT_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{PORT}/%2F",
    "MAILSIFT_KAFKA_WAIT": "0",  # at once (waiting for a broker: tests/test_fault_drills.py)
}


@pytest.mark.parametrize(("args", "says"), [
    (["validate", SAMPLE], "cannot reach Kafka"),
    (["submit", SAMPLE], "cannot reach Kafka"),
    (["results", "some-job"], "cannot reach Kafka"),
    (["replay", "--job", "some-job"], "cannot reach Kafka"),
    (["worker"], "cannot reach Kafka"),
    (["status", "some-job"], "cannot reach Redis"),
    (["db", "migrate"], "cannot reach Postgres"),
    (["validate", "/no/such/file.txt"], "cannot read /no/such/file.txt"),
    (["replay"], "say what to replay"),
    # checked before any service is asked
    (["validate", SAMPLE, "--vocabulary", "briteverify"], "--vocabulary: unknown vocabulary"),
    (["results", "some-job", "--vocabulary", "Kickbox"], "--vocabulary: unknown vocabulary"),
])
def test_one_line_error_and_exit_code_2(args: list[str], says: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailsift.cli.main", *args], cwd=tmp_path,
        env={**os.environ, **DOWN, "COLUMNS": "300"}, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["config"], ["worker"], ["check", "a@b.test"]])
def test_an_unknown_provider_name_is_one_line(command: list[str], tmp_path: Path) -> None:
    """MAILSIFT_PROVIDER_LIMITS names providers only the engine knows: a typo stops
    start-up with one line naming the variable, before any service is asked."""
    env = {**os.environ, **DOWN, "MAILSIFT_PROVIDER_LIMITS": "gogle:connections=4"}
    result = subprocess.run([sys.executable, "-m", "mailsift.cli.main", *command],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: MAILSIFT_PROVIDER_LIMITS: unknown provider 'gogle'"), result.stderr


def test_a_worker_without_a_usable_temp_dir_says_so_in_one_line(tmp_path: Path) -> None:
    """Faust's data directory goes in the temp dir (made there if missing: a fresh machine
    has none); one that cannot be made is one line naming TMPDIR, before Kafka is asked."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / f"mailsift-faust-{os.getuid()}").write_text("")  # a file where the dir goes
    result = subprocess.run([sys.executable, "-m", "mailsift.cli.main", "worker"],
                            cwd=tmp_path, env={**os.environ, **DOWN, "TMPDIR": str(tmp),
                                               "COLUMNS": "300"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: cannot make Faust's data directory"), result.stderr
    assert "set TMPDIR" in lines[0], lines[0]
