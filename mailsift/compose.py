"""Where mailsift is put together: settings → engine config, adapters → the ports.

Every other package gets what it needs handed in: the engine an :class:`EngineConfig`, the
stage handlers a :class:`~agents.ports.Services` of ports. This module is the one place that
picks the implementations (Redis or in-process, Postgres, RabbitMQ) from the settings.

With ``MAILSIFT_REDIS_URL`` set, the DNS cache, the per-MX politeness limits and the job
bookkeeping live in Redis and are shared by every worker; without it they are per process
(fine for one worker).

>>> from mailsift.settings import load_settings
>>> engine_config(load_settings({"MAILSIFT_SMTP_PORT": "2525"})).smtp_port
2525
"""

from __future__ import annotations

from agents.jobstore import JobStore
from agents.ports import Publisher, Services, SuppressionList, VerdictBridge, VerdictWriter
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from checks.authrecords import load_suffix_list
from checks.budget import DailyCounter, DailyProbeBudget, MemoryDailyCounter, ProbeBudget
from checks.config import ProviderPolicy
from checks.provider import PROVIDERS
from mailsift.settings import Settings, SettingsError, load_settings
from sinks.memory_jobs import MemoryJobStore

__all__ = ["engine_config", "default_engine", "build_services"]


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's configuration from the ``MAILSIFT_*`` settings (a provider name the
    engine does not know raises :class:`SettingsError`)."""
    return EngineConfig(
        nameservers=tuple((ns.host, ns.port) for ns in settings.dns_nameservers),
        dns_timeout=settings.dns_timeout,
        dns_concurrency=settings.dns_concurrency,
        dns_min_ttl=settings.dns_min_ttl,
        dns_max_ttl=settings.dns_max_ttl,
        dns_negative_ttl=settings.dns_negative_ttl,
        smtp_port=settings.smtp_port,
        helo_name=settings.helo_name,
        mail_from=settings.mail_from,
        allowed_networks=settings.mx_allowed_networks,
        connect_timeout=settings.smtp_connect_timeout,
        command_timeout=settings.smtp_command_timeout,
        session_timeout=settings.smtp_session_timeout,
        smtp_idle_seconds=settings.smtp_idle_seconds,
        smtp_pipelining=settings.smtp_pipelining,
        smtp_merge_domains=settings.smtp_merge_domains,
        mx_backoff_min=settings.mx_backoff_seconds,
        mx_backoff_max=max(settings.mx_backoff_seconds, settings.mx_backoff_max_seconds),
        mx_max_connections=settings.mx_max_connections,
        mx_rcpt_per_second=settings.mx_max_rcpt_per_second,
        allow_test_tld=settings.allow_test_tld,
        providers=_providers(settings),
    )


def _providers(settings: Settings) -> dict[str, ProviderPolicy]:
    """``MAILSIFT_PROVIDER_LIMITS`` as policies; a provider we do not know is an error
    (a typo would silently apply nothing; the settings module, a leaf, cannot know them)."""
    out = {}
    for p in settings.provider_limits:
        if p.provider not in PROVIDERS:
            raise SettingsError(f"MAILSIFT_PROVIDER_LIMITS: unknown provider {p.provider!r} "
                                f"(known: {', '.join(sorted(PROVIDERS))})")
        out[p.provider] = ProviderPolicy(p.max_connections, p.rcpt_per_second,
                                         p.catch_all_probe)
    return out


def default_engine() -> Engine:
    """An engine configured from the ``MAILSIFT_*`` environment (in-process caches)."""
    return Engine(engine_config(load_settings()))


def probe_budget(settings: Settings, counter: DailyCounter) -> ProbeBudget | None:
    """The daily probe budgets of ``settings`` over ``counter``; None when there are none."""
    if not (settings.domain_daily_probes or settings.mx_daily_probes):
        return None
    return DailyProbeBudget(counter, domain_limit=settings.domain_daily_probes,
                            mx_limit=settings.mx_daily_probes)


def build_services(settings: Settings, publisher: Publisher) -> Services:
    """The ports of one worker's handlers, from ``settings``."""
    # the services' clients (asyncpg, pika, redis, aiokafka) are slow to import, and the
    # CLI commands that only need engine_config() should not pay for them
    from sinks.postgres import PostgresSink
    from sinks.rabbitmq import RabbitBridge
    from sinks.redis_client import redis_client
    from sinks.redis_daily import DailyAllowance
    from sinks.redis_dns_cache import RedisDnsCache
    from sinks.redis_jobs import RedisJobStore
    from sinks.redis_politeness import RedisPoliteness
    from sinks.redis_suppression import RedisSuppressionList
    from streams.job_rebuild import rebuilder

    config = engine_config(settings)
    load_suffix_list()  # not at the first DMARC lookup, with the event loop held
    client = None
    suppression: SuppressionList | None = None
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        engine = Engine(
            config, cache=RedisDnsCache(client, prefix=settings.redis_prefix),
            politeness=RedisPoliteness(
                client, max_connections=settings.mx_max_connections,
                rcpt_per_second=settings.mx_max_rcpt_per_second,
                # renewed every second while a session is open (so a lease Redis lost is
                # back within a second); a lease outlives five missed renewals (an event
                # loop stalled for 5 s), and a crashed worker's slots are free within 6 s:
                # the other workers' sessions to its hosts wait for no longer than that
                lease_seconds=6.0,
                prefix=settings.redis_prefix,
            ),
            budget=probe_budget(settings, DailyAllowance(client, prefix=settings.redis_prefix)),
        )
        jobs: JobStore = RedisJobStore(client, prefix=settings.redis_prefix,
                                       rebuild=rebuilder(settings),
                                       ttl_seconds=settings.job_ttl_seconds())
        suppression = RedisSuppressionList(client, prefix=settings.redis_prefix)
    else:
        engine = Engine(config, budget=probe_budget(settings, MemoryDailyCounter()))
        jobs = MemoryJobStore()
    sink: VerdictWriter | None = (PostgresSink(settings.database_url)
                                  if settings.database_url else None)
    bridge: VerdictBridge | None = RabbitBridge(settings.amqp_url) if settings.amqp_url else None
    return Services(settings, TopicNames.from_settings(settings), engine, jobs, publisher,
                    client, sink, bridge, suppression)
