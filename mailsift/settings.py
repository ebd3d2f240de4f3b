"""The one settings module: every knob comes from a ``MAILSIFT_*`` environment variable.

Values are read from the process environment, after loading a ``.env`` file from the
current directory (python-dotenv; real environment variables win). Defaults point at the
local stack started by ``mailsift stack up``, so a developer needs no configuration.

A wrong value raises :class:`SettingsError` whose message is one line naming the
variable and what is expected::

    >>> load_settings({"MAILSIFT_SMTP_PORT": "smtp"})
    Traceback (most recent call last):
    ...
    mailsift.settings.SettingsError: MAILSIFT_SMTP_PORT: expected an integer from 1 to 65535, got 'smtp'

    >>> s = load_settings({"MAILSIFT_DNS_NAMESERVERS": "127.0.2.1:5353, 127.0.0.1"})
    >>> s.dns_nameservers
    (Nameserver(host='127.0.2.1', port=5353), Nameserver(host='127.0.0.1', port=53))

``python -m mailsift.settings`` (or ``mailsift config``) prints the table of variables.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "Nameserver",
    "ProviderLimit",
    "Settings",
    "SettingsError",
    "load_settings",
    "settings_table",
]


class SettingsError(ValueError):
    """A configuration value is wrong; the message is one line naming the variable."""


class Nameserver(NamedTuple):
    """A DNS server to query: an IP address and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# --- parsers: each takes the raw string and returns the value or raises ValueError(expected)


def _str(raw: str) -> str:
    return raw.strip()


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"an integer from {lo} to {hi}")
        return value

    return parse


def _positive(unit: str) -> Callable[[str], float]:
    expected = f"a positive number{unit}"

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not value > 0 or value == float("inf"):
            raise ValueError(expected)
        return value

    return parse


_seconds = _positive(" of seconds")


def _seconds_or_zero(raw: str) -> float:
    expected = "a number of seconds, 0 or more"
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(expected) from None
    if not 0 <= value < float("inf"):
        raise ValueError(expected)
    return value


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("true or false")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(" or ".join(choices))
        return value
    return parse


def _url(*schemes: str, optional: bool = False) -> Callable[[str], str]:
    expected = " or ".join(f"{s}://…" for s in schemes)
    if optional:
        expected += " (or empty to disable)"

    def parse(raw: str) -> str:
        value = raw.strip()
        if not value and optional:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"a URL like {expected}")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"a URL like {expected} with a valid port") from None
        return value

    return parse


def _nameservers(raw: str) -> tuple[Nameserver, ...]:
    expected = "a comma list of ip or ip:port (empty = system resolver)"
    out: list[Nameserver] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(expected)
                port = _port_of(rest[1:], expected)
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            port = _port_of(p, expected)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(expected) from None
        out.append(Nameserver(host, port))
    return tuple(out)


def _port_of(raw: str, expected: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not 1 <= port <= 65535:
        raise ValueError(expected)
    return port


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError("a comma list of CIDR networks like 127.0.0.0/8") from None
    return tuple(out)


def _delays(raw: str) -> tuple[float, ...]:
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError("a comma list of positive seconds like 60,300,900") from None
        if value <= 0:
            raise ValueError("a comma list of positive seconds like 60,300,900")
        out.append(value)
    return tuple(out)


def _mail_from(raw: str) -> str:
    value = raw.strip()
    if any(c in value for c in "\r\n\0<> ") or (value and value.count("@") != 1):
        raise ValueError("an address like verify@example.com (or empty for the null sender)")
    return value


def _path(raw: str) -> Path:
    value = raw.strip()
    if not value:
        raise ValueError("a directory path")
    return Path(value).expanduser()


def _tokens(raw: str) -> tuple[str, ...]:
    """A comma list of bearer tokens (visible ASCII, no spaces)."""
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        if not all(33 <= ord(c) <= 126 for c in item):
            raise ValueError("a comma list of tokens of visible ASCII characters")
        out.append(item)
    return tuple(out)


class ProviderLimit(NamedTuple):
    """One mailbox provider's own politeness (``MAILSIFT_PROVIDER_LIMITS``); None: the
    per-MX default."""

    provider: str
    max_connections: int | None = None
    rcpt_per_second: float | None = None
    catch_all_probe: bool = True


_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_PROVIDER_HELP = ("provider:key=value,... entries separated by ';', keys connections (1-100), "
                  "rcpt_per_second (> 0) and catch_all (on|off), e.g. "
                  "'google:connections=5,rcpt_per_second=20;yahoo:catch_all=off'")


def _provider_limits(raw: str) -> tuple[ProviderLimit, ...]:
    """``google:connections=5,rcpt_per_second=20;yahoo:catch_all=off``.

    >>> _provider_limits("google:connections=5,rcpt_per_second=20; yahoo:catch_all=off")
    (ProviderLimit(provider='google', max_connections=5, rcpt_per_second=20.0, \
catch_all_probe=True), ProviderLimit(provider='yahoo', max_connections=None, \
rcpt_per_second=None, catch_all_probe=False))
    """
    out: dict[str, ProviderLimit] = {}
    for entry in (e.strip() for e in raw.split(";")):
        if not entry:
            continue
        name, colon, rest = entry.partition(":")
        name = name.strip().lower()
        if not colon or not _PROVIDER_NAME.match(name) or name in out:
            raise ValueError(_PROVIDER_HELP)
        limit = ProviderLimit(name)
        for item in (i.strip() for i in rest.split(",")):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            try:
                if not eq:
                    raise ValueError
                if key == "connections":
                    limit = limit._replace(max_connections=_int_range(1, 100)(value))
                elif key == "rcpt_per_second":
                    limit = limit._replace(rcpt_per_second=_positive("")(value))
                elif key == "catch_all" and value in ("on", "off"):
                    limit = limit._replace(catch_all_probe=value == "on")
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{_PROVIDER_HELP}; {name}: bad {item!r}") from None
        out[name] = limit
    return tuple(out.values())


def _setting(env: str, default: str, parse: Callable[[str], Any], doc: str) -> Any:
    return field(metadata={"env": env, "default": default, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All of mailsift's configuration, parsed and validated. Build with :func:`load_settings`."""

    kafka_broker: str = _setting(
        "MAILSIFT_KAFKA_BROKER", "kafka://127.0.0.1:19092", _url("kafka"),
        "Kafka bootstrap server (the local stack runs Tansu here).")
    topic_prefix: str = _setting(
        "MAILSIFT_TOPIC_PREFIX", "mailsift.", _str, "Prefix of every Kafka topic name.")
    database_url: str = _setting(
        "MAILSIFT_DATABASE_URL", "postgresql://mailsift@127.0.0.1:15432/mailsift",
        _url("postgresql", "postgres", optional=True),
        "Postgres DSN for the verdict sink; empty disables the sink.")
    redis_url: str = _setting(
        "MAILSIFT_REDIS_URL", "redis://127.0.0.1:16379/0", _url("redis", optional=True),
        "Redis for DNS cache and per-MX politeness; empty = in-process only.")
    redis_prefix: str = _setting(
        "MAILSIFT_REDIS_PREFIX", "mailsift:", _str,
        "Prefix of every Redis key (lets several pipelines share one Redis).")
    amqp_url: str = _setting(
        "MAILSIFT_AMQP_URL", "amqp://guest:guest@127.0.0.1:15673/%2F",
        _url("amqp", "amqps", optional=True),
        "RabbitMQ for the legacy verdict bridge; empty disables the bridge.")
    dns_nameservers: tuple[Nameserver, ...] = _setting(
        "MAILSIFT_DNS_NAMESERVERS", "", _nameservers,
        "Comma list of ip or ip:port to query; empty = the system resolver's.")
    dns_concurrency: int = _setting(
        "MAILSIFT_DNS_CONCURRENCY", "100", _int_range(1, 10000),
        "DNS queries a worker has in flight at once (more wait their turn, not counted "
        "against MAILSIFT_DNS_TIMEOUT).")
    dns_timeout: float = _setting(
        "MAILSIFT_DNS_TIMEOUT", "3", _seconds, "Seconds for one DNS lookup.")
    dns_min_ttl: float = _setting(
        "MAILSIFT_DNS_MIN_TTL", "60", _seconds,
        "Shortest time a DNS answer is cached (answers' own TTLs are clamped to this range).")
    dns_max_ttl: float = _setting(
        "MAILSIFT_DNS_MAX_TTL", "86400", _seconds, "Longest time a DNS answer is cached.")
    dns_negative_ttl: float = _setting(
        "MAILSIFT_DNS_NEGATIVE_TTL", "300", _seconds,
        "Longest time NXDOMAIN/no-record answers are cached.")
    smtp_port: int = _setting(
        "MAILSIFT_SMTP_PORT", "25", _int_range(1, 65535), "TCP port of every MX host.")
    helo_name: str = _setting(
        "MAILSIFT_HELO_NAME", "verify.mailsift.invalid", _str,
        "Name sent in EHLO/HELO; set it to your host's real FQDN in production.")
    mail_from: str = _setting(
        "MAILSIFT_MAIL_FROM", "verify@mailsift.invalid", _mail_from,
        "Envelope sender for probes; empty sends the null sender <>.")
    mx_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _setting(
        "MAILSIFT_MX_ALLOWED_NETWORKS", "", _networks,
        "CIDRs that may be contacted although private/loopback; empty = public unicast only.")
    smtp_connect_timeout: float = _setting(
        "MAILSIFT_SMTP_CONNECT_TIMEOUT", "10", _seconds, "Seconds to connect to an MX.")
    smtp_command_timeout: float = _setting(
        "MAILSIFT_SMTP_COMMAND_TIMEOUT", "15", _seconds,
        "Seconds to wait for one SMTP reply.")
    smtp_session_timeout: float = _setting(
        "MAILSIFT_SMTP_SESSION_TIMEOUT", "120", _seconds,
        "Seconds for one whole SMTP session.")
    smtp_idle_seconds: float = _setting(
        "MAILSIFT_SMTP_IDLE_SECONDS", "1", _seconds,
        "Seconds a pooled SMTP session may sit without work before it is closed (QUIT).")
    smtp_pipelining: bool = _setting(
        "MAILSIFT_SMTP_PIPELINING", "true", _bool,
        "Send RCPT TO commands in pipelined groups (RFC 2920) to servers that offer it.")
    smtp_merge_domains: bool = _setting(
        "MAILSIFT_SMTP_MERGE_DOMAINS", "true", _bool,
        "Ask about the recipients of several domains with the same MX hosts in one MAIL "
        "transaction while the hosts' sessions are busy (as Exim's multi_domain does).")
    mx_backoff_seconds: float = _setting(
        "MAILSIFT_MX_BACKOFF_SECONDS", "30", _seconds,
        "First back-off of an MX host that refused or timed out (doubles per failure).")
    mx_backoff_max_seconds: float = _setting(
        "MAILSIFT_MX_BACKOFF_MAX_SECONDS", "900", _seconds,
        "Longest back-off of a failing MX host.")
    mx_max_connections: int = _setting(
        "MAILSIFT_MX_MAX_CONNECTIONS", "2", _int_range(1, 100),
        "Simultaneous SMTP connections per MX host.")
    mx_max_rcpt_per_second: float = _setting(
        "MAILSIFT_MX_MAX_RCPT_PER_SECOND", "5", _positive(""),
        "RCPT TO commands per second per MX host.")
    provider_limits: tuple[ProviderLimit, ...] = _setting(
        "MAILSIFT_PROVIDER_LIMITS", "", _provider_limits,
        "Per-provider overrides of the two above, and of the catch-all probe, for MX hosts "
        "of a known provider (evidence.provider): "
        "`google:connections=5,rcpt_per_second=20;yahoo:catch_all=off`.")
    app_id: str = _setting(
        "MAILSIFT_APP_ID", "mailsift", _str,
        "Faust application id: the Kafka consumer group shared by all workers.")
    kafka_produce_linger: float = _setting(
        "MAILSIFT_KAFKA_PRODUCE_LINGER", "0.005", _seconds_or_zero,
        "Seconds a worker's producer waits to fill a batch before it sends (0 = send at "
        "once): fewer, larger produce requests for a little latency per stage.")
    kafka_session_timeout: float = _setting(
        "MAILSIFT_KAFKA_SESSION_TIMEOUT", "10", _seconds,
        "Seconds without heartbeat before Kafka moves a worker's partitions to the others.")
    kafka_rebalance_timeout: float = _setting(
        "MAILSIFT_KAFKA_REBALANCE_TIMEOUT", "20", _seconds,
        "Seconds the group waits for every worker to rejoin during a rebalance.")
    kafka_wait: float = _setting(
        "MAILSIFT_KAFKA_WAIT", "60", _seconds_or_zero,
        "Seconds a command waits for an unreachable broker before it gives up: the CLI, an "
        "API request, a worker's start (a running worker waits as long as it takes).")
    drain_seconds: float = _setting(
        "MAILSIFT_DRAIN_SECONDS", "10", _seconds,
        "On SIGTERM, seconds a worker lets its in-flight work finish and its SMTP sessions "
        "QUIT before it commits what is done and leaves (the rest is redelivered).")
    partitions: int = _setting(
        "MAILSIFT_PARTITIONS", "8", _int_range(1, 1024),
        "Partitions of each topic mailsift creates (the most workers that can share a stage).")
    replication_factor: int = _setting(
        "MAILSIFT_REPLICATION_FACTOR", "1", _int_range(1, 10),
        "Replication factor of the topics mailsift creates.")
    retry_delays: tuple[float, ...] = _setting(
        "MAILSIFT_RETRY_DELAYS", "60,300,900", _delays,
        "Seconds before each retry of a temporary outcome (greylisting, 4xx, timeouts).")
    max_in_flight: int = _setting(
        "MAILSIFT_MAX_IN_FLIGHT", "500", _int_range(1, 100000),
        "Unfinished events per partition before a stage stops reading (backpressure); "
        "finished ones waiting for an earlier one's ack count up to 4 times that.")
    domain_batch_window: float = _setting(
        "MAILSIFT_DOMAIN_BATCH_WINDOW", "0.2", _seconds,
        "Seconds to gather addresses of one domain into one SMTP session.")
    domain_daily_probes: int = _setting(
        "MAILSIFT_DOMAIN_DAILY_PROBES", "0", _int_range(0, 1_000_000_000),
        "RCPT probes one domain gets per UTC day, catch-all probes included (0 = no "
        "budget). Past it, addresses wait for the next day, or end unknown/probe_budget "
        "when their job asked not to wait.")
    mx_daily_probes: int = _setting(
        "MAILSIFT_MX_DAILY_PROBES", "0", _int_range(0, 1_000_000_000),
        "RCPT probes one MX host (a domain's most preferred, by name) gets per UTC day from "
        "all the domains it serves (0 = no budget).")
    domain_concurrency: int = _setting(
        "MAILSIFT_DOMAIN_CONCURRENCY", "1000", _int_range(1, 100000),
        "Domain batches a worker checks at once (each waits for its DNS and for a session "
        "of its MX host): enough to keep every MX host of a list busy.")
    domain_batch_size: int = _setting(
        "MAILSIFT_DOMAIN_BATCH_SIZE", "50", _int_range(1, 10000),
        "Most addresses checked together in one domain batch.")
    web_host: str = _setting(
        "MAILSIFT_WEB_HOST", "127.0.0.1", _str,
        "Address the worker's web server (/metrics, /healthz, /readyz) listens on.")
    web_port: int = _setting(
        "MAILSIFT_WEB_PORT", "6066", _int_range(0, 65535),
        "Port of the worker's web server (0 disables it).")
    api_tokens: tuple[str, ...] = _setting(
        "MAILSIFT_API_TOKENS", "", _tokens,
        "Comma list of bearer tokens the HTTP API accepts; empty = only /healthz, /readyz "
        "and /openapi.json answer. A token sees only the jobs it submitted.")
    api_admin_tokens: tuple[str, ...] = _setting(
        "MAILSIFT_API_ADMIN_TOKENS", "", _tokens,
        "Comma list of admin bearer tokens: they see and delete every job (also those "
        "submitted by the CLI or upstream) and manage the suppression list.")
    api_job_max_addresses: int = _setting(
        "MAILSIFT_API_JOB_MAX_ADDRESSES", "1000000", _int_range(1, 1_000_000_000),
        "Most addresses one API job may hold (more gets 413).")
    api_daily_addresses: int = _setting(
        "MAILSIFT_API_DAILY_ADDRESSES", "0", _int_range(0, 1_000_000_000),
        "Addresses a (non-admin) token may submit per UTC day, jobs and /v1/verify "
        "together (over it gets 429 until midnight UTC); 0 = no quota.")
    api_max_body: int = _setting(
        "MAILSIFT_API_MAX_BODY", "10485760", _int_range(1024, 1 << 30),
        "Largest request body the HTTP API accepts, in bytes (larger gets 413); a list "
        "upload has its own limit, MAILSIFT_API_MAX_UPLOAD.")
    api_max_upload: int = _setting(
        "MAILSIFT_API_MAX_UPLOAD", "268435456", _int_range(1024, 1 << 40),
        "Largest CSV or text list the HTTP API and the dashboard accept, in bytes (larger "
        "gets 413); spooled to a temporary file, so memory stays bounded.")
    api_drain_seconds: float = _setting(
        "MAILSIFT_API_DRAIN_SECONDS", "60", _seconds_or_zero,
        "On shutdown, how long the API waits for lists it accepted (202) to finish "
        "submitting; those still going after it are marked failed.")
    api_session_hours: float = _setting(
        "MAILSIFT_API_SESSION_HOURS", "12", _positive(" of hours"),
        "How long a dashboard login lasts (its session cookie and its record in Redis).")
    api_rate: float = _setting(
        "MAILSIFT_API_RATE", "10", _positive(" of requests per second"),
        "Requests per second allowed per API token (token bucket; over it gets 429).")
    api_burst: int = _setting(
        "MAILSIFT_API_BURST", "20", _int_range(1, 1_000_000),
        "Requests an API token may make at once above its rate (bucket size).")
    webhook_secret: str = _setting(
        "MAILSIFT_WEBHOOK_SECRET", "", _str,
        "Key of the HMAC-SHA256 signature of webhook bodies; empty = webhooks are refused.")
    webhook_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        _setting(
            "MAILSIFT_WEBHOOK_ALLOWED_NETWORKS", "", _networks,
            "CIDRs webhooks may be sent to although private/loopback; empty = public only."))
    webhook_retry_delays: tuple[float, ...] = _setting(
        "MAILSIFT_WEBHOOK_RETRY_DELAYS", "10,30,60,300,900,1800,3600,7200,14400,21600",
        _delays,
        "Seconds before each retry of a webhook a receiver did not take (about 14 hours "
        "in all by default); then the delivery is given up.")
    allow_test_tld: bool = _setting(
        "MAILSIFT_ALLOW_TEST_TLD", "false", _bool,
        "Accept addresses under the reserved .test TLD (the simulated world uses it).")
    retention_days: float = _setting(
        "MAILSIFT_RETENTION_DAYS", "30", _positive(" of days"),
        "Days a job is kept: the retention.ms of every Kafka topic mailsift creates (a topic "
        "made earlier with another value is named in a warning), the age at which the "
        "purge removes a job from Postgres, and the longest a job's Redis keys live.")
    purge_interval: float = _setting(
        "MAILSIFT_PURGE_INTERVAL", "3600", _seconds_or_zero,
        "Seconds between a worker's purges of the jobs older than MAILSIFT_RETENTION_DAYS "
        "from Postgres (0 = never; `mailsift db purge` runs one now).")
    log_format: str = _setting(
        "MAILSIFT_LOG_FORMAT", "text", _one_of("text", "json"),
        "Log lines of `mailsift worker` and `mailsift api`: text, or json (one object a "
        "line, with job_id, stage and worker). No full address at INFO or above either way.")
    stack_dir: Path = _setting(
        "MAILSIFT_STACK_DIR", ".mailsift", _path,
        "Where `mailsift stack` keeps data, logs and PID files.")

    @property
    def retention_seconds(self) -> float:
        """``MAILSIFT_RETENTION_DAYS`` in seconds."""
        return self.retention_days * 86_400.0

    def job_ttl_seconds(self, default: float = 7 * 86_400.0) -> float:
        """How long a job's Redis keys live after their last write: ``default``, but never
        longer than the retention."""
        return min(default, self.retention_seconds)

    @classmethod
    def fields_table(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting, in declaration order."""
        return [
            (f.metadata["env"], f.metadata["default"], f.metadata["doc"])
            for f in dataclasses.fields(cls)
        ]


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: bool = True
) -> Settings:
    """Read and validate every ``MAILSIFT_*`` variable.

    ``environ`` defaults to ``os.environ`` (after loading ``.env`` when ``dotenv`` is true).
    Raises :class:`SettingsError` on the first wrong value.
    """
    if environ is None:
        if dotenv:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
        environ = os.environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        env: str = f.metadata["env"]
        raw = environ.get(env, f.metadata["default"])
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise SettingsError(f"{env}: expected {exc}, got {raw!r}") from None
    return Settings(**values)


def settings_table() -> str:
    """A Markdown table of the variables, their defaults and meanings (for the README)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for env, default, doc in Settings.fields_table():
        rows.append(f"| `{env}` | `{default}` | {doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_table())
