"""The score formula (checks/score.py) and the provider table (checks/provider.py)."""

from __future__ import annotations

import pytest

from checks.model import (
    DmarcInfo,
    Evidence,
    PolicyFlags,
    Reason,
    SpfInfo,
    Verdict,
    VerificationResult,
)
from checks.provider import provider_of
from checks.score import BASE, score
from checks.verdict import verdict_for
from schemas import SchemaError, VerdictEvent

AUTH = {"spf": SpfInfo("present"), "dmarc": DmarcInfo("present")}


def result(reason: Reason, **evidence: object) -> VerificationResult:
    fields = {**AUTH, **evidence}
    return VerificationResult("a@x.test", "a@x.test", verdict_for(reason), reason,
                              False, Evidence(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_its_base(reason: Reason) -> None:
    expected = 0 if verdict_for(reason) is Verdict.UNDELIVERABLE else BASE[reason]
    assert score(result(reason)) == expected


def test_the_evidence_moves_the_score() -> None:
    assert score(result(Reason.OK)) == 100
    assert score(result(Reason.OK, spf=SpfInfo("absent"), dmarc=DmarcInfo("absent"))) == 90
    for broken in ("invalid", "multiple", "permerror"):
        assert score(result(Reason.OK, spf=SpfInfo(broken))) == 95
    assert score(result(Reason.OK, spf=SpfInfo("unknown"))) == 100  # a DNS failure: no blame
    assert score(result(Reason.OK, flags=PolicyFlags(suggestion="a@gmail.com"))) == 95
    assert score(result(Reason.OK, flags=PolicyFlags(free=True))) == 100  # accepted: fine
    assert score(result(Reason.CATCH_ALL, flags=PolicyFlags(free=True))) == 55
    assert score(result(Reason.OK), attempts=3) == 95
    # nothing lifts an undeliverable address above 0, nothing takes one below 0
    assert score(result(Reason.MAILBOX_NOT_FOUND), attempts=1) == 0
    worst = result(Reason.DISPOSABLE, spf=SpfInfo("absent"), dmarc=DmarcInfo("absent"),
                   flags=PolicyFlags(free=True, suggestion="x"))
    assert score(worst, attempts=2) == 0
    assert result(Reason.OK).to_dict()["score"] == 100


@pytest.mark.parametrize(("hosts", "provider"), [
    (["aspmx.l.google.com", "alt1.aspmx.l.google.com"], "google"),
    (["acme-com.mail.protection.outlook.com"], "microsoft"),
    (["mta7.am0.yahoodns.net"], "yahoo"),
    (["mx1.acme.pphosted.com"], "proofpoint"),
    (["eu-smtp-inbound-1.mimecast.com"], "mimecast"),
    (["in1-smtp.messagingengine.com"], "fastmail"),
    (["mx.acme.test", "aspmx.l.google.com"], "google"),  # the first known one
    (["mx.notgoogle.com"], None),  # whole labels only
    (["mx.acme.test"], None),
    ([], None),
])
def test_provider_from_mx_hosts(hosts: list[str], provider: str | None) -> None:
    assert provider_of(hosts) == provider


def test_verdict_event_score_is_optional_and_checked() -> None:
    base = (b'{"job_id": "j", "email": "a@x.test", "normalized": null, "verdict": "risky", '
            b'"reason": "catch_all", "dedupe_key": "a@x.test", "attempt": 1, '
            b'"checked_at": "2026-12-02T00:00:00Z", "evidence": {}')
    assert VerdictEvent.decode(base + b"}").score is None  # events from before scores
    assert VerdictEvent.decode(base + b', "score": 60}').score == 60
    with pytest.raises(SchemaError, match="score"):
        VerdictEvent.decode(base + b', "score": 101}')
