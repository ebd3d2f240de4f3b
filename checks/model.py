"""The vocabulary of the verification engine: verdicts, reasons and evidence.

Everything here is plain data (frozen dataclasses and string enums), JSON-able through
:func:`to_jsonable`, and shared by the pure logic and the I/O parts of :mod:`checks`.

>>> Verdict.DELIVERABLE.value
'deliverable'
>>> Reason.MAILBOX_NOT_FOUND in PERMANENT_FAILURES
True
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Verdict", "Reason", "PERMANENT_FAILURES", "RISKY_REASONS", "INDETERMINATE",
    "TEMPORARY_REASONS", "ParsedAddress", "AddressProblem", "PolicyFlags", "MxHost",
    "MxStatus", "MxResult", "SpfInfo", "DmarcInfo", "DkimInfo", "SmtpReply", "ReplyClass",
    "RcptResult", "Evidence", "VerificationResult", "to_jsonable",
]


class Verdict(enum.StrEnum):
    """The one-word answer for an address."""

    DELIVERABLE = "deliverable"
    UNDELIVERABLE = "undeliverable"
    RISKY = "risky"
    UNKNOWN = "unknown"


class Reason(enum.StrEnum):
    """The primary reason behind a verdict (the README lists what each means)."""

    OK = "ok"
    SYNTAX = "syntax"
    NO_DOMAIN = "no_domain"
    NULL_MX = "null_mx"
    NO_MX_HOST = "no_mx_host"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_DISABLED = "mailbox_disabled"
    MAILBOX_FULL = "mailbox_full"
    CATCH_ALL = "catch_all"
    DISPOSABLE = "disposable"
    ROLE_ACCOUNT = "role_account"
    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    BLOCKED = "blocked"
    GREYLISTED = "greylisted"
    MX_NOT_ALLOWED = "mx_not_allowed"
    DNS_ERROR = "dns_error"
    SMTP_ERROR = "smtp_error"
    SENDER_REJECTED = "sender_rejected"
    SERVER_ERROR = "server_error"
    #: on the suppression list: nothing was asked (no DNS, no SMTP)
    SUPPRESSED = "suppressed"
    #: the daily probe budget of the domain or its MX host was spent: not asked today
    PROBE_BUDGET = "probe_budget"
    #: mailsift could not check the address (a bug of ours, or a store refusing us): the
    #: final verdict, so the job completes; the error is in the evidence and dead letters
    CHECK_FAILED = "check_failed"


PERMANENT_FAILURES = frozenset({
    Reason.SYNTAX, Reason.NO_DOMAIN, Reason.NULL_MX, Reason.NO_MX_HOST,
    Reason.MAILBOX_NOT_FOUND, Reason.MAILBOX_DISABLED,
})
RISKY_REASONS = frozenset({
    Reason.CATCH_ALL, Reason.DISPOSABLE, Reason.ROLE_ACCOUNT, Reason.MAILBOX_FULL,
})
INDETERMINATE = frozenset({
    Reason.TIMEOUT, Reason.CONNECTION_FAILED, Reason.BLOCKED, Reason.GREYLISTED,
    Reason.MX_NOT_ALLOWED, Reason.DNS_ERROR, Reason.SMTP_ERROR, Reason.SENDER_REJECTED,
    Reason.SERVER_ERROR, Reason.SUPPRESSED, Reason.PROBE_BUDGET, Reason.CHECK_FAILED,
})
#: outcomes worth asking again later (the pipeline re-queues them with a delay)
TEMPORARY_REASONS = frozenset({
    Reason.TIMEOUT, Reason.CONNECTION_FAILED, Reason.GREYLISTED, Reason.DNS_ERROR,
    Reason.SERVER_ERROR,
})


@dataclass(frozen=True)
class ParsedAddress:
    """A syntactically valid, normalized address.

    ``normalized`` keeps the local part as given and lower-cases the (Unicode) domain;
    ``ascii_domain`` is the IDNA form used for DNS; ``dedupe_key`` identifies the mailbox
    within a job (local part compared case-insensitively, as nearly every server does).
    """

    original: str
    local: str
    domain: str
    ascii_domain: str
    normalized: str
    display_name: str | None
    smtputf8: bool
    dedupe_key: str

    @property
    def ascii_address(self) -> str:
        """``local@ascii_domain``, what an SMTP ``RCPT TO`` carries."""
        return f"{self.local}@{self.ascii_domain}"

    def parts(self) -> dict[str, Any]:
        """What :meth:`from_parts` needs besides the input, the ASCII domain and the
        dedupe key (which a pipeline event carries anyway): a parse result sent along
        with its address, so a later stage need not parse it again."""
        return {"local": self.local, "domain": self.domain, "normalized": self.normalized,
                "display_name": self.display_name, "smtputf8": self.smtputf8}

    @classmethod
    def from_parts(cls, original: str, ascii_domain: str, dedupe_key: str,
                   parts: dict[str, Any] | None) -> ParsedAddress | None:
        """The address :meth:`parts` described, or None when ``parts`` is missing or not
        of that shape (then parse ``original`` again).

        >>> from checks.syntax import parse_address
        >>> a = parse_address("Ann <Ann@Bücher.de>")
        >>> ParsedAddress.from_parts(a.original, a.ascii_domain, a.dedupe_key, a.parts()) == a
        True
        >>> ParsedAddress.from_parts("x@y.de", "y.de", "x@y.de", {"local": 1}) is None
        True
        >>> forged = {**a.parts(), "local": "other"}  # not what the dedupe key says
        >>> ParsedAddress.from_parts(a.original, a.ascii_domain, a.dedupe_key, forged) is None
        True
        """
        if parts is None:
            return None
        local, domain, normalized = parts.get("local"), parts.get("domain"), parts.get(
            "normalized")
        display_name, smtputf8 = parts.get("display_name"), parts.get("smtputf8")
        if not (isinstance(local, str) and isinstance(domain, str)
                and isinstance(normalized, str) and isinstance(smtputf8, bool)
                and (display_name is None or isinstance(display_name, str))):
            return None
        # what a parse makes of its parts, and what an RCPT line can carry: anything else
        # did not come from our syntax check (then it is parsed again)
        if (normalized != f"{local}@{domain}" or smtputf8 == local.isascii()
                or dedupe_key != f"{local.casefold()}@{ascii_domain}"
                or not 0 < len(local) <= 64 or any(c in local for c in "<>\r\n\x00")):
            return None
        return cls(original, local, domain, ascii_domain, normalized, display_name,
                   smtputf8, dedupe_key)


@dataclass(frozen=True)
class AddressProblem:
    """Why an input is not a usable address (reason is always :attr:`Reason.SYNTAX`)."""

    original: str
    message: str


@dataclass(frozen=True)
class PolicyFlags:
    """List-hygiene facts about an address that need no network."""

    disposable: bool = False
    role: bool = False
    free: bool = False
    suggestion: str | None = None


@dataclass(frozen=True)
class MxHost:
    """One mail exchanger with the addresses we resolved for it ourselves."""

    preference: int
    host: str
    addresses: tuple[str, ...]


class MxStatus(enum.StrEnum):
    OK = "ok"
    NO_DOMAIN = "no_domain"
    NULL_MX = "null_mx"
    NO_MX_HOST = "no_mx_host"
    DNS_ERROR = "dns_error"


@dataclass(frozen=True)
class MxResult:
    """Where mail for a domain goes (RFC 5321 §5.1, RFC 7505)."""

    status: MxStatus
    hosts: tuple[MxHost, ...] = ()
    implicit: bool = False  # no MX record: the domain's own A/AAAA is the MX
    error: str | None = None


@dataclass(frozen=True)
class SpfInfo:
    """The domain's SPF record, evaluated (``checks.spf``).

    ``status`` is present | absent | invalid (a syntax error) | multiple | permerror (the
    tree breaks a limit, or an include/redirect does not resolve to one valid record) |
    unknown (a DNS failure). ``all_qualifier`` is the effective ``all`` (through
    ``redirect=``); ``lookups`` and ``void_lookups`` count over the whole tree, whose
    followed names are ``followed``; ``error`` is the first of ``errors``.
    """

    status: str
    record: str | None = None
    all_qualifier: str | None = None  # "+", "-", "~", "?" or None when there is no `all`
    error: str | None = None
    lookups: int = 0
    void_lookups: int = 0
    followed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class DmarcInfo:
    """The ``_dmarc`` record: ``status`` is present | absent | invalid | unknown.

    ``org_domain`` is set when the domain has no record of its own and the one found is
    its organizational domain's (RFC 7489 §6.6.3); ``policy`` is then the one that
    applies to the domain: that record's ``sp``, else its ``p``.
    """

    status: str
    record: str | None = None
    policy: str | None = None
    subdomain_policy: str | None = None
    pct: int | None = None
    rua: tuple[str, ...] = ()
    error: str | None = None
    org_domain: str | None = None


@dataclass(frozen=True)
class DkimInfo:
    """DKIM keys found at common selectors: ``status`` is present | unknown (never absent:
    selectors cannot be listed, so not finding one proves nothing)."""

    status: str
    selectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmtpReply:
    """One SMTP reply: code, enhanced status code (RFC 3463) when given, text."""

    code: int
    message: str
    enhanced: str | None = None


class ReplyClass(enum.StrEnum):
    """What an SMTP reply to ``RCPT TO`` (or earlier command) means for the mailbox."""

    ACCEPTED = "accepted"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_DISABLED = "mailbox_disabled"
    MAILBOX_FULL = "mailbox_full"
    BLOCKED = "blocked"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    SENDER_REJECTED = "sender_rejected"  # our MAIL FROM was refused: nothing about the mailbox
    SERVER_ERROR = "server_error"  # the server's own trouble (4.3.x, system storage)
    TEMPORARY = "temporary"
    PERMANENT = "permanent"  # another 5xx we cannot interpret as a mailbox fact


@dataclass(frozen=True)
class RcptResult:
    """The SMTP outcome for one recipient: a reply, or a transport failure (``error``)."""

    reply: SmtpReply | None
    reply_class: ReplyClass | None
    reason: Reason | None = None  # set for transport failures (timeout, connection_failed…)
    mx_host: str | None = None
    mx_address: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything the verdict was decided from."""

    flags: PolicyFlags = PolicyFlags()
    mx: MxResult | None = None
    spf: SpfInfo | None = None
    dmarc: DmarcInfo | None = None
    dkim: DkimInfo | None = None
    smtp: RcptResult | None = None
    catch_all: bool | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the mailbox provider, from the MX host names (:mod:`checks.provider`)
    provider: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    """The engine's answer for one input."""

    address: str
    normalized: str | None
    verdict: Verdict
    reason: Reason
    temporary: bool
    evidence: Evidence

    @property
    def score(self) -> int:
        """0–100, how safe it is to send to this address (:mod:`checks.score`)."""
        from checks.score import score  # score.py reads this module's types

        return score(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        out["score"] = self.score
        return out


#: field names of each dataclass seen by :func:`_to_jsonable_py` (``fields()`` is slow)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """Dataclasses/enums/tuples to plain JSON types.

    orjson walks dataclasses, enums and tuples in C (about ten times faster than the Python
    walk, which every verdict paid: issue #14); a value it cannot encode (a dict with
    non-string keys, an unknown type) takes the Python walk.

    >>> to_jsonable(SmtpReply(250, "OK", "2.1.5"))
    {'code': 250, 'message': 'OK', 'enhanced': '2.1.5'}
    >>> to_jsonable({1: (Verdict.UNKNOWN,)})
    {'1': ['unknown']}
    """
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return _to_jsonable_py(value)


def _to_jsonable_py(value: Any) -> Any:
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _to_jsonable_py(getattr(value, name)) for name in names}
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_to_jsonable_py(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable_py(v) for k, v in value.items()}
    return value
