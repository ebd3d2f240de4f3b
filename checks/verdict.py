"""Verdict rules: from evidence to one verdict and one primary reason. Pure logic.

* permanent failures (syntax, no_domain, null_mx, no_mx_host, mailbox_not_found,
  mailbox_disabled) → ``undeliverable``;
* accepted but disposable / catch_all / role_account, or mailbox_full → ``risky``
  (when several apply, the first of that order is the reason);
* accepted otherwise → ``deliverable`` with reason ``ok``;
* could not tell (timeout, connection_failed, blocked, greylisted, mx_not_allowed,
  dns_error, smtp_error, sender_rejected, server_error) → ``unknown``; timeouts,
  connection failures, greylisting, DNS errors and the server's own trouble are
  *temporary*: worth asking again later. ``sender_rejected`` is not: the probe's sender
  must change first.

>>> decide(PolicyFlags(), MxResult(MxStatus.NULL_MX), None, None)
(<Verdict.UNDELIVERABLE: 'undeliverable'>, <Reason.NULL_MX: 'null_mx'>)
>>> from checks.model import SmtpReply
>>> accepted = RcptResult(SmtpReply(250, "OK"), ReplyClass.ACCEPTED)
>>> decide(PolicyFlags(role=True), MxResult(MxStatus.OK), accepted, False)
(<Verdict.RISKY: 'risky'>, <Reason.ROLE_ACCOUNT: 'role_account'>)
"""

from __future__ import annotations

from checks.model import (
    INDETERMINATE,
    PERMANENT_FAILURES,
    RISKY_REASONS,
    MxResult,
    MxStatus,
    PolicyFlags,
    RcptResult,
    Reason,
    ReplyClass,
    Verdict,
)

__all__ = ["decide", "verdict_for"]

_MX_REASON = {
    MxStatus.NO_DOMAIN: Reason.NO_DOMAIN,
    MxStatus.NULL_MX: Reason.NULL_MX,
    MxStatus.NO_MX_HOST: Reason.NO_MX_HOST,
    MxStatus.DNS_ERROR: Reason.DNS_ERROR,
}

_CLASS_REASON = {
    ReplyClass.MAILBOX_NOT_FOUND: Reason.MAILBOX_NOT_FOUND,
    ReplyClass.MAILBOX_DISABLED: Reason.MAILBOX_DISABLED,
    ReplyClass.MAILBOX_FULL: Reason.MAILBOX_FULL,
    ReplyClass.BLOCKED: Reason.BLOCKED,
    ReplyClass.TEMPORARY: Reason.GREYLISTED,
    ReplyClass.TOO_MANY_RECIPIENTS: Reason.GREYLISTED,
    ReplyClass.SENDER_REJECTED: Reason.SENDER_REJECTED,
    ReplyClass.SERVER_ERROR: Reason.SERVER_ERROR,
    ReplyClass.PERMANENT: Reason.SMTP_ERROR,
}


def verdict_for(reason: Reason) -> Verdict:
    """The verdict a primary reason implies.

    >>> verdict_for(Reason.GREYLISTED)
    <Verdict.UNKNOWN: 'unknown'>
    """
    if reason is Reason.OK:
        return Verdict.DELIVERABLE
    if reason in PERMANENT_FAILURES:
        return Verdict.UNDELIVERABLE
    if reason in RISKY_REASONS:
        return Verdict.RISKY
    assert reason in INDETERMINATE, reason
    return Verdict.UNKNOWN


def decide(
    flags: PolicyFlags,
    mx: MxResult | None,
    rcpt: RcptResult | None,
    catch_all: bool | None,
) -> tuple[Verdict, Reason]:
    """The verdict and primary reason for one address.

    ``mx`` is None only when DNS was not consulted; ``rcpt`` is None when no SMTP answer
    exists for the address (then the MX status or the transport failure decides).
    """
    reason = _primary_reason(flags, mx, rcpt, catch_all)
    return verdict_for(reason), reason


def _primary_reason(
    flags: PolicyFlags, mx: MxResult | None, rcpt: RcptResult | None, catch_all: bool | None
) -> Reason:
    if mx is not None and mx.status is not MxStatus.OK:
        return _MX_REASON[mx.status]
    if rcpt is None:
        return Reason.CONNECTION_FAILED
    if rcpt.reply_class is None:
        return rcpt.reason or Reason.CONNECTION_FAILED
    if rcpt.reply_class is ReplyClass.ACCEPTED:
        if flags.disposable:
            return Reason.DISPOSABLE
        if catch_all:
            return Reason.CATCH_ALL
        if flags.role:
            return Reason.ROLE_ACCOUNT
        return Reason.OK
    return _CLASS_REASON[rcpt.reply_class]
