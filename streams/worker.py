"""Run a mailsift worker: make sure the topics exist, then run the Faust app until stopped.

Several workers (on one machine or many) share the work: Kafka splits each topic's
partitions between them (consumer group ``MAILSIFT_APP_ID``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from agents.outage import retry_transient
from mailsift.settings import Settings
from streams.topics import ensure_topics

if TYPE_CHECKING:
    from streams.topology import ServicesFactory

__all__ = ["run_worker", "KafkaUnavailable", "WorkerStartError", "check_kafka"]


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer; the message is one line saying what to do."""


class WorkerStartError(RuntimeError):
    """The worker cannot start on this machine; the message is one line saying what to do."""


def check_kafka(settings: Settings) -> None:
    """Create missing topics; raise :class:`KafkaUnavailable` when the broker is not there
    within ``MAILSIFT_KAFKA_WAIT``."""
    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.client import kafka_calls

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # a failure is reported once, as KafkaUnavailable
    async def topics() -> None:
        await asyncio.wait_for(ensure_topics(settings), 30)

    try:
        with kafka_calls(settings):
            asyncio.run(retry_transient(f"Kafka at {settings.kafka_broker}", topics,
                                        first_delay=0.5, max_delay=5.0,
                                        give_up_after=settings.kafka_wait))
    finally:
        kafka_log.setLevel(level)


def use_uvloop() -> None:
    """Run the worker on uvloop (faust supports it): the event loop is a good part of a
    worker's CPU time. Without the package installed, the standard loop is used."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - it is a dependency
        return
    import mode.loop

    mode.loop.use("uvloop")


#: seconds between the young collections a worker runs itself (see :func:`tune_gc`)
YOUNG_COLLECTION_SECONDS = 0.25


def tune_gc(app: Any) -> None:
    """Rare full collections, short young ones, for the worker ``app``.

    A busy worker allocates many short-lived objects per event (none of them cyclic
    garbage worth chasing often), and every full collection walks every live object, more
    of them the bigger the backlog: a full one comes after 1,000 middle ones (100M new
    objects, as with the thresholds of 50,000/20/100 before), a middle one after 20 young
    ones, a young one after 5,000 new objects or a quarter of a second (below), so a
    middle one walks at most what 5 s left alive.

    A young collection walks every young object still alive, and Python starts one when
    allocations minus deallocations pass the threshold. A worker draining a backlog frees
    old objects (the events it took in long ago) about as fast as it makes the young ones
    that outlive them, so that count stayed low while the young objects piled up: its
    young collections came every 10-25 s and held the event loop for 20-120 ms (each RCPT
    permit due meanwhile came late). So the worker also runs one every
    ``YOUNG_COLLECTION_SECONDS``: a young collection walks at most what a quarter of a
    second left alive. What is alive after start-up (modules, the app) is frozen out of
    the collections for good.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 1_000)

    async def mailsift_collect_young() -> None:
        while True:
            await asyncio.sleep(YOUNG_COLLECTION_SECONDS)
            gc.collect(0)

    app.task(mailsift_collect_young)


def dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 PID`` writes every asyncio task's stack to the worker's stderr: what a
    stalled worker is waiting for, without stopping it."""
    import signal
    import sys

    def dump(signum: int, frame: object) -> None:
        loop = asyncio.events._get_running_loop()
        if loop is None:
            return
        tasks = asyncio.all_tasks(loop)
        print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
        for task in tasks:
            task.print_stack(limit=12, file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)


def run_worker(settings: Settings, services_for: ServicesFactory, *,
               loglevel: str = "info", logging_config: dict[str, Any] | None = None) -> None:
    """Blocks until the worker is stopped (SIGTERM/SIGINT); ``services_for`` composes the
    handlers' ports (``mailsift.compose.build_services``). ``logging_config`` (a
    :func:`logging.config.dictConfig`) replaces Faust's own log setup."""
    import faust

    # faust is slow to import: only for a worker
    from streams.topology import build_app, faust_datadir

    faust_datadir()  # a temp dir it cannot use stops the worker before anything is asked
    check_kafka(settings)
    use_uvloop()
    dump_tasks_on_sigusr1()
    app = build_app(settings, services_for)
    tune_gc(app)
    logging.getLogger("faust").setLevel(loglevel.upper())
    # aiokafka logs every produce and fetch at DEBUG: unless asked for, never build those
    # records (they cost a few % of a busy worker's CPU)
    if loglevel.lower() != "debug":
        logging.getLogger("aiokafka").setLevel(logging.INFO)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logging_config)
    worker.execute_from_commandline()
