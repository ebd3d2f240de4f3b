"""Start, find and stop the stack's processes by PID.

Each started process gets a record ``<run_dir>/<name>.json`` holding its PID and the
kernel's start time of that PID (``/proc/PID/stat`` field 22), so a recycled PID is never
mistaken for ours and never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ProcessRecord", "spawn", "stop", "alive", "load_record", "proc_start_time"]


@dataclass(frozen=True)
class ProcessRecord:
    """What we remember about a process we started."""

    name: str
    pid: int
    start_time: int
    log: str

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / f"{self.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)


def proc_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of ``pid``, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    state = fields[0]
    if state in {"Z", "X"}:
        return None
    return int(fields[19])


def load_record(run_dir: Path, name: str) -> ProcessRecord | None:
    path = run_dir / f"{name}.json"
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def alive(record: ProcessRecord | None) -> bool:
    """True when the recorded process still runs (same PID *and* same start time)."""
    return record is not None and proc_start_time(record.pid) == record.start_time


def spawn(
    name: str,
    argv: list[str],
    *,
    run_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start ``argv`` in its own session, output appended to ``log_path``; record its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            start_new_session=True,
        )
    start = proc_start_time(proc.pid)
    record = ProcessRecord(name=name, pid=proc.pid, start_time=start or 0, log=str(log_path))
    record.save(run_dir)
    # the Popen object is dropped on purpose: the process outlives this command
    proc.returncode = 0  # silence "subprocess still running" ResourceWarning
    return record


def stop(record: ProcessRecord, run_dir: Path, *, sig: int = signal.SIGTERM,
         grace: float = 30.0) -> bool:
    """Signal our process, wait up to ``grace`` seconds, then SIGKILL its process group.

    Returns True when something was stopped. The record file is removed either way.
    """
    stopped = False
    if alive(record):
        stopped = True
        os.kill(record.pid, sig)
        deadline = time.monotonic() + grace
        while alive(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(record):
            # the session/process group was created by us at spawn (start_new_session)
            try:
                os.killpg(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while alive(record):
                time.sleep(0.05)
    _reap(record.pid)
    (run_dir / f"{record.name}.json").unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status if the process was our child (avoids a zombie in tests)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
