"""Helpers for pipeline tests: a world process, worker processes, following a job."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailsift.settings import Settings, load_settings
from schemas import JobEvent, VerdictEvent
from streams.client import dedupe_key as dedupe_key  # re-exported for the tests
from streams.client import follow

REPO = Path(__file__).resolve().parent.parent


class WorldProcess:
    """``python -m tests.world`` in a subprocess; stopped by its PID."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.world", *args], cwd=REPO,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.info: dict[str, Any] = json.loads(self.proc.stdout.readline())

    def env(self) -> dict[str, str]:
        return {
            "MAILSIFT_DNS_NAMESERVERS": self.info["nameserver"],
            "MAILSIFT_SMTP_PORT": str(self.info["smtp_port"]),
            "MAILSIFT_MX_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MAILSIFT_ALLOW_TEST_TLD": "true",
        }

    def stats(self, *, times: bool = False) -> dict[str, Any]:
        query = "?times=1" if times else ""
        with urllib.request.urlopen(f"{self.info['control']}/stats{query}",
                                    timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)


@contextlib.contextmanager
def running_world(*args: str) -> Iterator[WorldProcess]:
    """A world process for the block; on a clean exit it must have seen no DATA/BDAT."""
    world = WorldProcess(*args)
    try:
        yield world
        assert world.stats()["data_commands"] == 0, "a probe must never send DATA/BDAT"
    finally:
        world.stop()


def private_stack_settings(stack_dir: Path, base_port: int, *, database: bool = True,
                           amqp: bool = True) -> Settings:
    """Settings of a stack of a test's own: Kafka on ``base_port``, then Postgres, Redis and
    RabbitMQ on the next ports (so stopping one of its services disturbs nobody else)."""
    p = base_port
    return load_settings({
        "MAILSIFT_STACK_DIR": str(stack_dir),
        "MAILSIFT_KAFKA_BROKER": f"kafka://127.0.0.1:{p}",
        "MAILSIFT_DATABASE_URL":
            f"postgresql://mailsift@127.0.0.1:{p + 1}/mailsift" if database else "",
        "MAILSIFT_REDIS_URL": f"redis://127.0.0.1:{p + 2}/0",
        "MAILSIFT_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{p + 3}/%2F" if amqp else "",
    }, dotenv=False)


@contextlib.contextmanager
def private_stack(stack_dir: Path, base_port: int, **services: bool) -> Iterator[Settings]:
    """A private stack (see :func:`private_stack_settings`) for the block, then stopped."""
    from mailsift.stack import stack_down, stack_up

    settings = private_stack_settings(stack_dir, base_port, **services)
    stack_up(settings)
    try:
        yield settings
    finally:
        stack_down(settings)
        remove_service_data(stack_dir)


def remove_service_data(stack_dir: Path) -> None:
    """Delete the data a private stack kept outside ``stack_dir`` (/var/lib/mailsift/…)."""
    for name in ("postgres", "rabbitmq"):
        link = stack_dir / name
        if link.is_symlink():
            target = link.resolve()
            if target.is_relative_to("/var/lib/mailsift"):
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()


def stack_env(settings: Settings) -> dict[str, str]:
    """The ``MAILSIFT_*`` URLs that point a pipeline at ``settings``' services."""
    return {"MAILSIFT_KAFKA_BROKER": settings.kafka_broker,
            "MAILSIFT_DATABASE_URL": settings.database_url,
            "MAILSIFT_REDIS_URL": settings.redis_url, "MAILSIFT_AMQP_URL": settings.amqp_url}


def pipeline_env(world: WorldProcess, **overrides: str) -> dict[str, str]:
    """A private pipeline (own topics and consumer group) on the shared local stack."""
    run = uuid.uuid4().hex[:10]
    env = {
        **world.env(),
        "MAILSIFT_TOPIC_PREFIX": f"t{run}.",
        "MAILSIFT_APP_ID": f"t{run}",
        # own Redis keys: DNS answers cached from another test's world must not leak in
        "MAILSIFT_REDIS_PREFIX": f"mailsift-t{run}:",
        "MAILSIFT_PARTITIONS": "4",
        "MAILSIFT_RETRY_DELAYS": "1,2",
        "MAILSIFT_WEB_PORT": "0",
        "MAILSIFT_KAFKA_SESSION_TIMEOUT": "6",
        "MAILSIFT_KAFKA_REBALANCE_TIMEOUT": "5",
        # generous for a loaded 2-core machine; the tarpit (30 s banner) still times out
        "MAILSIFT_SMTP_CONNECT_TIMEOUT": "4",
        "MAILSIFT_SMTP_COMMAND_TIMEOUT": "6",
        "MAILSIFT_SMTP_SESSION_TIMEOUT": "20",
        "MAILSIFT_DOMAIN_BATCH_WINDOW": "0.1",
    }
    env.update(overrides)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    return load_settings({**{k: v for k, v in os.environ.items()
                             if k.startswith("MAILSIFT_")}, **env})


@dataclass
class WorkerProcess:
    """``mailsift worker`` in a subprocess (own session), stopped or killed by PID."""

    env: dict[str, str]
    log_path: Path
    #: the source tree the worker runs from (``python -m`` imports from its cwd first); the
    #: benchmark points it at a checkout of an earlier commit to compare before and after
    tree: Path = REPO
    #: ``mailsift worker -l``: warn keeps the tests' logs short
    loglevel: str = "warn"
    #: another ``mailsift`` command instead of the worker (``("api", "--port", "8081")``)
    command: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        # a temp dir of its own, empty as on a fresh machine: nothing the worker needs may
        # be left there by an earlier run (a worker once needed a directory only a run
        # before had made, and every test passed on this machine but none on a fresh one)
        tmp = self.log_path.with_name(f"{self.log_path.stem}-tmp")
        tmp.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsift.cli.main",
             *(self.command or ("worker", "-l", self.loglevel))],
            cwd=self.tree, env={**os.environ, "TMPDIR": str(tmp), **self.env},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _workers.append(self)

    def crashed(self) -> str | None:
        """What the worker printed last, if it exited with an error (not stopped here)."""
        code = self.proc.poll()
        if code is None or code <= 0:  # running, done, or stopped by a signal
            return None
        self.log.flush()
        tail = self.log_text().strip().splitlines()[-3:]
        return f"worker {self.pid} exited with {code}: " + " | ".join(tail)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _workers.remove(self) if self in _workers else None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)
        self.log.close()

    def stop(self) -> None:
        _workers.remove(self) if self in _workers else None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def full_addresses_in(text: str, addresses: Iterable[str]) -> list[str]:
    """The ``addresses`` that ``text`` (a log) shows whole: none may be at INFO or above.

    >>> full_addresses_in("ok j***@x.test, bob@x.test", ["jane@x.test", "bob@x.test"])
    ['bob@x.test']
    """
    lowered = text.lower()
    return [a for a in addresses if a.lower() in lowered]


#: the workers started and not yet stopped: a wait for verdicts ends when one of them crashed
_workers: list[WorkerProcess] = []


async def _no_worker_crashes() -> None:
    while True:
        for worker in _workers:
            if (crash := worker.crashed()) is not None:
                raise AssertionError(crash)
        await asyncio.sleep(0.5)


async def produce_raw(settings: Settings, topic: str,
                      records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) records as they are: how tests inject malformed events."""
    from aiokafka import AIOKafkaProducer

    from streams.topics import bootstrap_servers

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings))
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@dataclass
class JobOutcome:
    verdicts: list[VerdictEvent]
    events: list[JobEvent]

    def final_by_key(self) -> dict[str, VerdictEvent]:
        """The latest verdict per address (duplicates on the topic are allowed)."""
        out: dict[str, VerdictEvent] = {}
        for v in self.verdicts:
            out[v.dedupe_key] = v
        return out

    def completed(self) -> JobEvent | None:
        return next((e for e in self.events if e.kind == "completed"), None)


async def wait_for_job(settings: Settings, job_id: str, expected_keys: Iterable[str], *,
                       timeout: float, on_verdict: Any = None,
                       replay_id: str | None = None) -> JobOutcome:
    """Follow a job run until every expected address has a verdict and it completed (fails
    at once when a worker started here crashed)."""
    expected = set(expected_keys)
    outcome = JobOutcome([], [])
    seen: set[str] = set()

    async def run() -> None:
        async for item in follow(settings, job_id):
            if item.verdict is not None:
                if item.verdict.replay_id != replay_id:
                    continue
                outcome.verdicts.append(item.verdict)
                seen.add(item.verdict.dedupe_key)
                if on_verdict is not None:
                    await on_verdict(len(seen))
            elif item.job is not None and item.job.replay_id == replay_id:
                outcome.events.append(item.job)
            if expected <= seen and outcome.completed() is not None:
                return

    async def run_unless_a_worker_crashed() -> None:
        follower = asyncio.ensure_future(run())
        watchdog = asyncio.ensure_future(_no_worker_crashes())
        try:
            done, _ = await asyncio.wait({follower, watchdog},
                                         return_when=asyncio.FIRST_COMPLETED)
            done.pop().result()
        finally:
            for task in (follower, watchdog):
                task.cancel()
            await asyncio.gather(follower, watchdog, return_exceptions=True)

    try:
        await asyncio.wait_for(run_unless_a_worker_crashed(), timeout)
    except TimeoutError:
        missing = sorted(expected - seen)
        raise AssertionError(
            f"job {job_id}: {len(seen)}/{len(expected)} addresses with a verdict after "
            f"{timeout}s, completed={outcome.completed() is not None}; missing e.g. "
            f"{missing[:5]}") from None
    return outcome


def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def with_env(settings: Settings, env: dict[str, str]) -> Settings:
    """``settings`` with the variables of ``env`` applied on top (parsed as
    ``load_settings`` does): the pipeline's settings plus an API's own, for ``create_app``.
    """
    parsed = load_settings(env, dotenv=False)
    return dataclasses.replace(settings, **{
        f.name: getattr(parsed, f.name) for f in dataclasses.fields(Settings)
        if f.metadata["env"] in env})


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``mailsift ARGS`` as a user runs it, with ``env`` on top of this process's."""
    return subprocess.run([sys.executable, "-m", "mailsift.cli.main", *args],
                          env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=120)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
