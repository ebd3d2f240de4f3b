"""Every verdict rule."""

from __future__ import annotations

import pytest

from checks.model import (
    MxResult,
    MxStatus,
    PolicyFlags,
    RcptResult,
    Reason,
    ReplyClass,
    SmtpReply,
    Verdict,
)
from checks.verdict import decide

OK_MX = MxResult(MxStatus.OK)


def rcpt(cls: ReplyClass | None, reason: Reason | None = None) -> RcptResult:
    return RcptResult(SmtpReply(250, "x") if cls else None, cls, reason)


@pytest.mark.parametrize(
    ("mx_status", "expected"),
    [(MxStatus.NO_DOMAIN, Reason.NO_DOMAIN), (MxStatus.NULL_MX, Reason.NULL_MX),
     (MxStatus.NO_MX_HOST, Reason.NO_MX_HOST), (MxStatus.DNS_ERROR, Reason.DNS_ERROR)],
)
def test_dns_outcomes(mx_status: MxStatus, expected: Reason) -> None:
    verdict, reason = decide(PolicyFlags(), MxResult(mx_status), None, None)
    assert reason is expected
    assert verdict is (Verdict.UNKNOWN if expected is Reason.DNS_ERROR else Verdict.UNDELIVERABLE)


@pytest.mark.parametrize(
    ("cls", "flags", "catch_all", "verdict", "reason"),
    [
        (ReplyClass.ACCEPTED, PolicyFlags(), False, Verdict.DELIVERABLE, Reason.OK),
        (ReplyClass.ACCEPTED, PolicyFlags(), None, Verdict.DELIVERABLE, Reason.OK),
        (ReplyClass.ACCEPTED, PolicyFlags(), True, Verdict.RISKY, Reason.CATCH_ALL),
        (ReplyClass.ACCEPTED, PolicyFlags(disposable=True, role=True), True, Verdict.RISKY,
         Reason.DISPOSABLE),
        (ReplyClass.ACCEPTED, PolicyFlags(role=True), False, Verdict.RISKY, Reason.ROLE_ACCOUNT),
        (ReplyClass.ACCEPTED, PolicyFlags(free=True, suggestion="a@gmail.com"), False,
         Verdict.DELIVERABLE, Reason.OK),
        (ReplyClass.MAILBOX_NOT_FOUND, PolicyFlags(), False, Verdict.UNDELIVERABLE,
         Reason.MAILBOX_NOT_FOUND),
        (ReplyClass.MAILBOX_DISABLED, PolicyFlags(), False, Verdict.UNDELIVERABLE,
         Reason.MAILBOX_DISABLED),
        (ReplyClass.MAILBOX_FULL, PolicyFlags(), False, Verdict.RISKY, Reason.MAILBOX_FULL),
        (ReplyClass.BLOCKED, PolicyFlags(), None, Verdict.UNKNOWN, Reason.BLOCKED),
        (ReplyClass.TEMPORARY, PolicyFlags(), None, Verdict.UNKNOWN, Reason.GREYLISTED),
        (ReplyClass.TOO_MANY_RECIPIENTS, PolicyFlags(), None, Verdict.UNKNOWN,
         Reason.GREYLISTED),
        (ReplyClass.PERMANENT, PolicyFlags(), None, Verdict.UNKNOWN, Reason.SMTP_ERROR),
    ],
)
def test_smtp_outcomes(cls: ReplyClass, flags: PolicyFlags, catch_all: bool | None,
                       verdict: Verdict, reason: Reason) -> None:
    assert decide(flags, OK_MX, rcpt(cls), catch_all) == (verdict, reason)


@pytest.mark.parametrize("reason", [Reason.TIMEOUT, Reason.CONNECTION_FAILED,
                                    Reason.MX_NOT_ALLOWED])
def test_transport_failures_are_unknown(reason: Reason) -> None:
    assert decide(PolicyFlags(), OK_MX, rcpt(None, reason), None) == (Verdict.UNKNOWN, reason)


def test_evidence_encodes_the_same_through_orjson_and_the_python_walk() -> None:
    """``to_jsonable`` takes orjson's C walk; it must give what the Python walk gives for a
    full result (nested dataclasses, enums, tuples, None, floats)."""
    from checks.model import (
        DkimInfo,
        DmarcInfo,
        Evidence,
        MxHost,
        SpfInfo,
        VerificationResult,
        _to_jsonable_py,
        to_jsonable,
    )

    evidence = Evidence(
        flags=PolicyFlags(free=True, suggestion="gmail.com"),
        mx=MxResult(MxStatus.OK, (MxHost(10, "mx.ok.test", ("127.0.0.1", "::1")),)),
        spf=SpfInfo("present", "v=spf1 -all", "-"), dmarc=DmarcInfo("present", rua=("a@b",)),
        dkim=DkimInfo("present", ("s1",)),
        smtp=RcptResult(SmtpReply(550, "no such user", "5.1.1"), ReplyClass.MAILBOX_NOT_FOUND,
                        mx_host="mx.ok.test", mx_address="127.0.0.1"),
        catch_all=False, timings={"dns": 0.125, "smtp": 1.5},
    )
    result = VerificationResult("a@ok.test", "a@ok.test", Verdict.UNDELIVERABLE,
                                Reason.MAILBOX_NOT_FOUND, False, evidence)
    fast = to_jsonable(result)
    assert fast == _to_jsonable_py(result)
    assert fast["evidence"]["mx"]["hosts"][0]["addresses"] == ["127.0.0.1", "::1"]
    assert fast["verdict"] == "undeliverable" and fast["evidence"]["smtp"]["reply_class"]
    assert to_jsonable({1: (Verdict.UNKNOWN,)}) == {"1": ["unknown"]}  # the fallback
