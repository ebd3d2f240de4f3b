"""The verification engine: syntax → policy → DNS → polite SMTP probe → verdict.

>>> import asyncio
>>> engine = Engine(EngineConfig())
>>> asyncio.run(engine.verify("not an address")).reason
<Reason.SYNTAX: 'syntax'>

Addresses of one domain are checked together (:meth:`Engine.verify_domain`): one DNS
resolution, one catch-all probe (cached per domain) and SMTP sessions shared by all of
them. :meth:`Engine.verify_many` groups any list by domain and runs domains concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol

from checks.authrecords import lookup_dkim, lookup_dmarc
from checks.budget import BudgetGrant, ProbeBudget
from checks.coalesce import CoalescingProber, Prober
from checks.config import EngineConfig
from checks.dns import (
    CachingResolver,
    DnsCache,
    DnspythonResolver,
    MemoryDnsCache,
    RecordingResolver,
    Resolver,
)
from checks.model import (
    TEMPORARY_REASONS,
    AddressProblem,
    DkimInfo,
    DmarcInfo,
    Evidence,
    MxResult,
    MxStatus,
    ParsedAddress,
    RcptResult,
    Reason,
    ReplyClass,
    SpfInfo,
    Verdict,
    VerificationResult,
)
from checks.mx import resolve_mx
from checks.policy import policy_flags
from checks.politeness import HostLimits, LocalPoliteness, Politeness
from checks.pool import MxPool, PoolConfig
from checks.probe import ProbeConfig, SmtpProber
from checks.provider import provider_of
from checks.smtp import SmtpConnector, StreamSmtpConnector
from checks.spf import lookup_spf
from checks.syntax import parse_address
from checks.ttlmap import TtlMap
from checks.verdict import decide

__all__ = ["Engine", "EngineObserver", "NullObserver", "DomainFacts", "syntax_result",
           "suppressed_result", "budget_result", "failed_result"]

_CATCH_ALL_KEY = "catchall:"


class EngineObserver(Protocol):
    """Told what the engine saw (metrics); must be quick and never raise."""

    def rcpt_result(self, result: RcptResult) -> None:
        """One recipient's SMTP outcome (catch-all probes included)."""
        ...


class NullObserver:
    def rcpt_result(self, result: RcptResult) -> None:
        pass


class DomainFacts:
    """DNS facts about one domain, looked up once for all its addresses."""

    def __init__(self, mx: MxResult, spf: SpfInfo | None, dmarc: DmarcInfo | None,
                 dkim: DkimInfo | None, seconds: float) -> None:
        self.mx, self.spf, self.dmarc, self.dkim, self.seconds = mx, spf, dmarc, dkim, seconds
        self.provider = provider_of(h.host for h in mx.hosts)


def syntax_result(problem: AddressProblem) -> VerificationResult:
    """The verdict for an input that is not an address."""
    return VerificationResult(
        address=problem.original, normalized=None, verdict=Verdict.UNDELIVERABLE,
        reason=Reason.SYNTAX, temporary=False, evidence=Evidence(error=problem.message),
    )


def budget_result(parsed: ParsedAddress, facts: DomainFacts, grant: BudgetGrant
                  ) -> VerificationResult:
    """The verdict for an address its domain's or MX host's daily probe budget had no room
    for: the DNS facts are known, no mail server was asked."""
    return VerificationResult(
        address=parsed.original, normalized=parsed.normalized, verdict=Verdict.UNKNOWN,
        reason=Reason.PROBE_BUDGET, temporary=True,
        evidence=Evidence(
            flags=policy_flags(parsed), mx=facts.mx, spf=facts.spf, dmarc=facts.dmarc,
            dkim=facts.dkim, provider=facts.provider,
            error=f"the daily probe budget of {grant.exhausted} ({grant.limit}) is spent: "
                  "not asked today"),
    )


def suppressed_result(parsed: ParsedAddress, entry: str) -> VerificationResult:
    """The verdict for an address on the suppression list (``entry`` is what matched,
    ``domain:…`` or ``address:…``): nothing was asked of DNS or of a mail server."""
    return VerificationResult(
        address=parsed.original, normalized=parsed.normalized, verdict=Verdict.UNKNOWN,
        reason=Reason.SUPPRESSED, temporary=False,
        evidence=Evidence(error=f"on the suppression list ({entry}): not checked"),
    )


def failed_result(address: str, normalized: str | None, error: str) -> VerificationResult:
    """The final verdict for an address mailsift could not check (``error``: what failed,
    a bug of ours or a store that refuses us): ``unknown``, so its job still completes.

    >>> failed_result("a@b.test", "a@b.test", "RuntimeError: boom").reason
    <Reason.CHECK_FAILED: 'check_failed'>
    """
    return VerificationResult(
        address=address, normalized=normalized, verdict=Verdict.UNKNOWN,
        reason=Reason.CHECK_FAILED, temporary=False,
        evidence=Evidence(error=f"not checked: {error}"[:2000]),  # as in dead letters
    )


class Engine:
    """Checks addresses; every I/O dependency can be swapped (tests, Redis, other workers)."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        resolver: Resolver | None = None,
        cache: DnsCache | None = None,
        connector: SmtpConnector | None = None,
        politeness: Politeness | None = None,
        observer: EngineObserver | None = None,
        budget: ProbeBudget | None = None,
    ) -> None:
        self.config = config
        #: the daily probe budgets (``checks.budget``); None: no budget
        self.budget = budget
        self._parse = functools.lru_cache(maxsize=20_000)(self._parse_uncached)
        #: domain -> catch-all?, in front of the shared cache
        self._catch_all: TtlMap[bool] = TtlMap(100_000)
        #: domain -> its DNS facts, kept as long as the shortest-lived answer they came from
        self._facts: TtlMap[DomainFacts] = TtlMap(50_000)
        self.observer: EngineObserver = observer or NullObserver()
        self.cache: DnsCache = cache or MemoryDnsCache()
        base = resolver or DnspythonResolver(
            nameservers=config.nameservers or None, timeout=config.dns_timeout,
            max_in_flight=config.dns_concurrency,
        )
        self.resolver = CachingResolver(
            base, self.cache, min_ttl=config.dns_min_ttl, max_ttl=config.dns_max_ttl,
            negative_ttl=config.dns_negative_ttl,
        )
        self._lookups = RecordingResolver(self.resolver,
                                          negative_ttl=self.resolver.negative_cache_ttl)
        self.politeness = politeness or LocalPoliteness(
            max_connections=config.mx_max_connections,
            rcpt_per_second=config.mx_rcpt_per_second,
        )
        connector = connector or StreamSmtpConnector(
            helo_name=config.helo_name, connect_timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
        )
        #: MX hosts of a provider with limits of its own get them (set before a probe)
        self._provider_limits = {
            name: HostLimits.of(policy.max_connections or config.mx_max_connections,
                                policy.rcpt_per_second or config.mx_rcpt_per_second)
            for name, policy in config.providers.items()
            if policy.max_connections is not None or policy.rcpt_per_second is not None}
        #: sessions per MX address, shared by every domain the address serves
        self.pool = MxPool(connector, self.politeness, PoolConfig(
            port=config.smtp_port, helo_name=config.helo_name,
            max_connections=config.mx_max_connections, idle_seconds=config.smtp_idle_seconds,
            backoff_min=config.mx_backoff_min, backoff_max=config.mx_backoff_max,
        ))
        #: the probe itself (``self.prober`` may merge domains in front of it)
        self.smtp = smtp = SmtpProber(
            connector,
            self.politeness,
            ProbeConfig(
                port=config.smtp_port, helo_name=config.helo_name,
                mail_from=config.mail_from, session_timeout=config.session_timeout,
                allowed_networks=config.allowed_networks,
                rcpt_per_transaction=config.rcpt_per_transaction,
                pipelining=config.smtp_pipelining,
            ),
            pool=self.pool,
        )
        # a merged probe's RCPTs take at most 10 s of the host's grid (a quarter of the
        # session timeout if that is shorter): at low rates, domains' results keep flowing
        self.prober: Prober = (CoalescingProber(smtp, self.pool.max_connections,
                                                self.politeness.rcpt_interval,
                                                seconds=min(10.0, config.session_timeout / 4))
                               if config.smtp_merge_domains else smtp)

    # --- public API --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pooled SMTP sessions (QUIT); the engine stays usable."""
        await self.pool.aclose()

    def parse(self, raw: str) -> ParsedAddress | AddressProblem:
        """Syntax check and normalization (memoized: intake and the domain stage of one
        worker both parse an address, and a list repeats some)."""
        return self._parse(raw)

    def _parse_uncached(self, raw: str) -> ParsedAddress | AddressProblem:
        return parse_address(raw, allow_test_tld=self.config.allow_test_tld)

    async def verify(self, raw: str) -> VerificationResult:
        """Check one address."""
        return (await self.verify_many([raw]))[0]

    async def verify_many(self, raws: Sequence[str]) -> list[VerificationResult]:
        """Check many addresses, any domains; results in input order (duplicates share one)."""
        parsed = [self.parse(r) for r in raws]
        by_domain: dict[str, dict[str, ParsedAddress]] = {}
        for p in parsed:
            if isinstance(p, ParsedAddress):
                by_domain.setdefault(p.ascii_domain, {}).setdefault(p.dedupe_key, p)
        limit = asyncio.Semaphore(self.config.domain_concurrency)

        async def one_domain(group: list[ParsedAddress]) -> list[VerificationResult]:
            async with limit:
                return await self.verify_domain(group)

        groups = [list(g.values()) for g in by_domain.values()]
        answers = await asyncio.gather(*(one_domain(g) for g in groups))
        by_key = {r_key: r for g, rs in zip(groups, answers, strict=True)
                  for r_key, r in zip((a.dedupe_key for a in g), rs, strict=True)}
        out = []
        for raw, p in zip(raws, parsed, strict=True):
            if isinstance(p, AddressProblem):
                out.append(syntax_result(p))
            else:
                shared = by_key[p.dedupe_key]
                out.append(shared if shared.address == raw else _as_input(shared, raw, p))
        return out

    async def domain_facts(self, ascii_domain: str) -> DomainFacts:
        """MX, SPF, DMARC and DKIM for a domain (concurrently, through the DNS cache).

        The facts are kept in process, as one record per domain, for as long as the
        shortest-lived DNS answer they were made of (a failed lookup: not at all): a
        domain whose addresses arrive one by one costs one dict lookup per group, not a
        dozen cached queries."""
        memo = self._facts.get(ascii_domain)
        if memo is not None:
            self.resolver.hits += 1  # counted as one cache hit (the metrics report hits)
            known = memo[0]
            return DomainFacts(known.mx, known.spf, known.dmarc, known.dkim, 0.0)
        started = time.monotonic()
        resolver = self._lookups
        with resolver.scope() as scope:
            if self.config.check_auth_records:
                mx, spf, dmarc, dkim = await asyncio.gather(
                    resolve_mx(resolver, ascii_domain),
                    lookup_spf(resolver, ascii_domain),
                    lookup_dmarc(resolver, ascii_domain),
                    lookup_dkim(resolver, ascii_domain),
                )
                facts = DomainFacts(mx, spf, dmarc, dkim, time.monotonic() - started)
            else:
                mx = await resolve_mx(resolver, ascii_domain)
                facts = DomainFacts(mx, None, None, None, time.monotonic() - started)
        if not scope.failed and math.isfinite(scope.min_ttl):
            self._facts.put(ascii_domain, facts, scope.min_ttl)
        return facts

    async def verify_domain(self, addresses: Sequence[ParsedAddress]) -> list[VerificationResult]:
        """Check addresses that all belong to one domain, sharing DNS and SMTP sessions."""
        if not addresses:
            return []
        domain = addresses[0].ascii_domain
        if any(a.ascii_domain != domain for a in addresses):
            raise ValueError("verify_domain takes addresses of one domain")
        facts = await self.domain_facts(domain)
        rcpts: dict[str, RcptResult] = {}
        catch_all: bool | None = None
        smtp_seconds = 0.0
        over_budget: BudgetGrant | None = None
        asked = addresses
        if facts.mx.status is MxStatus.OK:
            started = time.monotonic()
            catch_all, rcpts, over_budget, asked = await self._probe(facts, domain, addresses)
            smtp_seconds = time.monotonic() - started
        if over_budget is None:
            return [self._result(a, facts, rcpts.get(a.ascii_address), catch_all, smtp_seconds)
                    for a in addresses]
        probed = {id(a) for a in asked}
        return [self._result(a, facts, rcpts.get(a.ascii_address), catch_all, smtp_seconds)
                if id(a) in probed else budget_result(a, facts, over_budget)
                for a in addresses]

    # --- internals ---------------------------------------------------------------------------

    def _apply_provider_limits(self, mx: MxResult) -> None:
        """Give the MX addresses of a provider with limits of its own those limits."""
        table = self.politeness.limits
        for host in mx.hosts:
            name = provider_of((host.host,))
            limits = self._provider_limits.get(name) if name is not None else None
            if limits is not None:
                for ip in host.addresses:
                    if table.own(ip) != limits:
                        table.set(ip, limits)

    async def _probe(self, facts: DomainFacts, domain: str, addresses: Sequence[ParsedAddress]
                     ) -> tuple[bool | None, dict[str, RcptResult], BudgetGrant | None,
                                Sequence[ParsedAddress]]:
        """Ask the MX about ``addresses`` (and a catch-all probe): the catch-all finding,
        the replies, and when the probe budget had no room for all of them, the budget's
        answer and the addresses that were asked."""
        mx = facts.mx
        if self._provider_limits:
            self._apply_provider_limits(mx)
        policy = self.config.providers.get(facts.provider) if facts.provider else None
        probe_catch_all = policy is None or policy.catch_all_probe
        catch_all = await self._known_catch_all(domain) if probe_catch_all else None
        probe_address = None
        if catch_all is None and probe_catch_all:
            probe_address = f"mailsift-probe-{secrets.token_hex(6)}@{domain}"
        over_budget: BudgetGrant | None = None
        taken = 0
        budget_host = mx.hosts[0].host if mx.hosts else domain
        if self.budget is not None:
            # one probe per distinct recipient (the prober asks each once)
            distinct = list(dict.fromkeys(a.ascii_address for a in addresses))
            wanted = len(distinct) + (probe_address is not None)
            grant = await self.budget.take(domain, budget_host, wanted)
            taken = grant.granted
            if grant.granted < wanted:
                over_budget = grant
                room = max(0, grant.granted - (probe_address is not None))
                if room == 0:  # a catch-all probe alone would tell nothing of use
                    probe_address = None
                allowed = set(distinct[:room])
                addresses = [a for a in addresses if a.ascii_address in allowed]
        recipients = list(dict.fromkeys(a.ascii_address for a in addresses))
        if probe_address is not None:
            recipients.insert(0, probe_address)
        if not recipients:
            if taken and self.budget is not None:
                await self.budget.give_back(domain, budget_host, taken)
            return catch_all, {}, over_budget, addresses
        report = await self.prober.probe(mx, recipients)
        if taken and self.budget is not None:
            # a recipient no server answered (no connection, a host we may not ask, a
            # session cut short) was not a probe: it is the budget's again
            answered = sum(1 for r in report.results.values() if r.reply is not None)
            if answered < taken:
                await self.budget.give_back(domain, budget_host, taken - answered)
        for rcpt in report.results.values():
            self.observer.rcpt_result(rcpt)
        if probe_address is not None:
            outcome = report.results.pop(probe_address, None)
            cls = outcome.reply_class if outcome else None
            if cls is ReplyClass.ACCEPTED:
                catch_all = True
            elif cls in {ReplyClass.MAILBOX_NOT_FOUND, ReplyClass.MAILBOX_DISABLED}:
                catch_all = False
            if catch_all is not None:
                self._catch_all.put(domain, catch_all, self.config.catch_all_ttl)
                await self.cache.set(_CATCH_ALL_KEY + domain, b"1" if catch_all else b"0",
                                     self.config.catch_all_ttl)
        return catch_all, report.results, over_budget, addresses

    async def _known_catch_all(self, domain: str) -> bool | None:
        local = self._catch_all.get(domain)
        if local is not None:
            return local[0]
        known = await self.cache.get(_CATCH_ALL_KEY + domain)
        if known is None:
            return None
        self._catch_all.put(domain, known == b"1", self.config.catch_all_ttl)
        return known == b"1"

    def _result(self, address: ParsedAddress, facts: DomainFacts, rcpt: RcptResult | None,
                catch_all: bool | None, smtp_seconds: float) -> VerificationResult:
        flags = policy_flags(address)
        verdict, reason = decide(flags, facts.mx, rcpt, catch_all)
        timings = {"dns": round(facts.seconds, 4)}
        if rcpt is not None:
            timings["smtp"] = round(smtp_seconds, 4)
        evidence = Evidence(
            flags=flags, mx=facts.mx, spf=facts.spf, dmarc=facts.dmarc, dkim=facts.dkim,
            smtp=rcpt, catch_all=catch_all,
            error=(rcpt.error if rcpt is not None else facts.mx.error), timings=timings,
            provider=facts.provider,
        )
        return VerificationResult(
            address=address.original, normalized=address.normalized, verdict=verdict,
            reason=reason, temporary=reason in TEMPORARY_REASONS, evidence=evidence,
        )


def _as_input(shared: VerificationResult, raw: str, parsed: ParsedAddress) -> VerificationResult:
    """A duplicate input gets the same verdict, reported under its own spelling."""
    fields: dict[str, Any] = dict(shared.__dict__)
    fields.update(address=raw, normalized=parsed.normalized)
    return VerificationResult(**fields)
