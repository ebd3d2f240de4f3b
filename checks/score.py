"""A 0–100 score per address: how safe it is to send to it. Pure logic.

The verdict's reason sets the base; the evidence then moves it a little. The formula,
all of it (the README repeats it for consumers):

* base by reason: ``ok`` 100; ``role_account`` 70, ``catch_all`` 60, ``mailbox_full`` 30,
  ``disposable`` 10; the temporary ``unknown`` reasons (``greylisted``, ``timeout``,
  ``connection_failed``, ``dns_error``, ``server_error``) 40, ``blocked`` and
  ``sender_rejected`` 35 (the server said nothing about the mailbox), ``smtp_error`` and
  ``mx_not_allowed`` 30; every ``undeliverable`` reason 0 (and nothing moves it);
* −5 for no SPF record or a broken one (``invalid``, ``multiple``, ``permerror``: past the
  lookup limits, a dangling include), −5 for no DMARC record (the organizational domain's
  counts; a domain without mail authentication is more often parked or abandoned), −5
  for a typo suggestion (``gmial.com``);
* −5 for a free-mail domain on a risky or unknown verdict (less to go on);
* −5 when it took more than one attempt (greylisted, then accepted);
* clamped to 0–100.

>>> from checks.model import Evidence, Reason, Verdict, VerificationResult
>>> ok = VerificationResult("a@x.test", "a@x.test", Verdict.DELIVERABLE, Reason.OK, False,
...                         Evidence())
>>> score(ok), score(ok, attempts=2)
(100, 95)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.model import Reason, Verdict

if TYPE_CHECKING:
    from checks.model import VerificationResult

__all__ = ["score", "BASE"]

_NO_SPF = frozenset({"absent", "invalid", "multiple", "permerror"})

BASE: dict[Reason, int] = {
    Reason.OK: 100,
    Reason.ROLE_ACCOUNT: 70, Reason.CATCH_ALL: 60, Reason.MAILBOX_FULL: 30,
    Reason.DISPOSABLE: 10,
    Reason.GREYLISTED: 40, Reason.TIMEOUT: 40, Reason.CONNECTION_FAILED: 40,
    Reason.DNS_ERROR: 40, Reason.SERVER_ERROR: 40,
    Reason.BLOCKED: 35, Reason.SENDER_REJECTED: 35,
    Reason.SMTP_ERROR: 30, Reason.MX_NOT_ALLOWED: 30,
    Reason.SUPPRESSED: 0,  # the user said never to send there
    Reason.PROBE_BUDGET: 30,  # not asked (yet)
    Reason.CHECK_FAILED: 30,  # not told (our failure)
}


def score(result: VerificationResult, *, attempts: int = 1) -> int:
    """The score of ``result`` (see the module docstring), after ``attempts`` attempts."""
    if result.verdict is Verdict.UNDELIVERABLE:
        return 0
    ev = result.evidence
    value = BASE.get(result.reason, 30)
    if ev.spf is not None and ev.spf.status in _NO_SPF:
        value -= 5
    if ev.dmarc is not None and ev.dmarc.status == "absent":
        value -= 5
    if ev.flags.suggestion:
        value -= 5
    if ev.flags.free and result.verdict is not Verdict.DELIVERABLE:
        value -= 5
    if attempts > 1:
        value -= 5
    return max(0, min(100, value))
