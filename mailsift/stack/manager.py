"""``mailsift stack up|down|status``: the local stack of real services, by PID.

``up`` is idempotent: a service whose recorded process still runs and answers is reported
as already running; the others are started (all at once) and waited for. ``down`` stops
exactly the processes recorded by ``up``, helpers (RabbitMQ's epmd) last.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mailsift.settings import Settings
from mailsift.stack.process import ProcessRecord, alive, load_record, spawn, stop
from mailsift.stack.services import Service, StackError, stack_services, tcp_open

__all__ = ["ServiceStatus", "stack_up", "stack_down", "stack_status", "run_dir"]

READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``mailsift stack status``."""

    name: str
    state: str  # "started" | "running" | "stopped" | "not running" | "dead"
    pid: int | None
    url: str
    log: str | None


def run_dir(settings: Settings) -> Path:
    return settings.stack_dir.resolve() / "run"


def _log_path(settings: Settings, name: str) -> Path:
    return settings.stack_dir.resolve() / "logs" / f"{name}.log"


def _start(settings: Settings, svc: Service) -> ProcessRecord:
    return spawn(
        svc.name, svc.argv, run_dir=run_dir(settings), log_path=_log_path(settings, svc.name),
        env=svc.env, cwd=svc.cwd, user=svc.user,
    )


def _wait_ready(svc: Service, record: ProcessRecord, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not alive(record):
            tail = _tail(Path(record.log))
            raise StackError(f"{svc.name} exited during start-up; last log line: {tail}")
        if svc.ready():
            return
        time.sleep(0.25)
    raise StackError(f"{svc.name} did not answer on port {svc.port} in time; see {record.log}")


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def stack_up(settings: Settings) -> list[ServiceStatus]:
    """Start every service that is not running yet and wait until all of them answer."""
    services = stack_services(settings)
    rdir = run_dir(settings)
    statuses: dict[str, ServiceStatus] = {}
    pending: list[tuple[Service, ProcessRecord]] = []
    to_start: list[Service] = []
    for svc in services:
        record = load_record(rdir, svc.name)
        if alive(record) and svc.ready():
            assert record is not None
            statuses[svc.name] = ServiceStatus(svc.name, "running", record.pid, svc.url,
                                               record.log)
            continue
        if alive(record):
            # ours but not answering (still starting, or wedged): restart it cleanly
            assert record is not None
            stop(record, rdir, sig=svc.stop_signal)
        to_start.append(svc)
    # every port is checked before anything starts: a conflict leaves nothing half-started
    for svc in to_start:
        _refuse_foreign_port(svc, rdir)
    for svc in to_start:
        svc.prepare()
        for helper in svc.helpers:
            hrec = load_record(rdir, helper.name)
            if not alive(hrec):
                hrec = _start(settings, helper)
                _wait_ready(helper, hrec, time.monotonic() + 30)
        pending.append((svc, _start(settings, svc)))
    deadline = time.monotonic() + READY_TIMEOUT
    for svc, record in pending:
        _wait_ready(svc, record, deadline)
        svc.after_ready()
        statuses[svc.name] = ServiceStatus(svc.name, "started", record.pid, svc.url, record.log)
    return [statuses[s.name] for s in services]


def _refuse_foreign_port(svc: Service, rdir: Path) -> None:
    ports = [svc.port, *svc.extra_ports]
    ports += [h.port for h in svc.helpers if not alive(load_record(rdir, h.name))]
    for port in ports:
        if tcp_open(port):
            raise StackError(
                f"port {port} for {svc.name} is taken by a process mailsift did not start; "
                f"stop it or choose another port in the matching MAILSIFT_*_URL"
            )


def stack_down(settings: Settings) -> list[ServiceStatus]:
    """Stop exactly the processes recorded by ``stack up``; helpers after their service."""
    rdir = run_dir(settings)
    try:
        services = stack_services(settings)
    except StackError:
        services = []
    order: list[tuple[str, int, str]] = []
    for svc in services:
        order.append((svc.name, svc.stop_signal, svc.url))
    for svc in services:
        for helper in svc.helpers:
            order.append((helper.name, helper.stop_signal, helper.url))
    known = {name for name, _, _ in order}
    # records left by a different configuration are stopped too
    if rdir.exists():
        for path in sorted(rdir.glob("*.json")):
            if path.stem not in known:
                order.append((path.stem, signal.SIGTERM, ""))
    out = []
    for name, sig, url in order:
        record = load_record(rdir, name)
        if record is None:
            out.append(ServiceStatus(name, "not running", None, url, None))
            continue
        stopped = stop(record, rdir, sig=sig)
        out.append(ServiceStatus(name, "stopped" if stopped else "not running",
                                 record.pid, url, record.log))
    return out


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """Which services run (recorded PID alive) and answer."""
    rdir = run_dir(settings)
    out = []
    for svc in stack_services(settings):
        for s in [*svc.helpers, svc]:
            record = load_record(rdir, s.name)
            if record is None:
                out.append(ServiceStatus(s.name, "not running", None, s.url, None))
            elif not alive(record):
                out.append(ServiceStatus(s.name, "dead", record.pid, s.url, record.log))
            else:
                state = "running" if s.ready() else "not answering"
                out.append(ServiceStatus(s.name, state, record.pid, s.url, record.log))
    return out
