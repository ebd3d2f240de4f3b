"""Our verdicts in the status words of commercial verifiers (Kickbox, ZeroBounce,
NeverBounce), so a user can swap one of them for mailsift without changing the code that
reads the results. Pure data and logic.

One table, :data:`TABLE`, gives the words for every :class:`~checks.model.Reason` (our
verdict follows from the reason); :data:`REFINEMENTS` lists the few cases where a flag
picks other words. The README shows both as :func:`vocabulary_table` renders them.

With a vocabulary other than ``mailsift``, a result row keeps all of its own columns and
gains the vendor's fields, each named ``<vocabulary>_<the vendor's field name>``
(:func:`vocabulary_columns`): our ``reason`` and Kickbox's ``reason`` cannot share a name.

>>> row = {"verdict": "risky", "reason": "catch_all", "role": False, "catch_all": True}
>>> vendor_fields("zerobounce", row)
{'status': 'catch-all', 'sub_status': ''}
>>> with_vocabulary(row, "kickbox") == row | {"kickbox_result": "risky",
...     "kickbox_reason": "low_deliverability", "kickbox_accept_all": True}
True
>>> vocabulary_columns("neverbounce")[-1]
'neverbounce_result'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from checks.model import Reason
from checks.verdict import verdict_for

__all__ = ["VOCABULARIES", "VENDOR_FIELDS", "TABLE", "REFINEMENTS", "Words", "Refinement",
           "check_vocabulary", "vendor_fields", "with_vocabulary", "vocabulary_columns",
           "vocabulary_table", "words_of"]

#: ``mailsift`` (the default) adds nothing to a row
VOCABULARIES = ("mailsift", "kickbox", "zerobounce", "neverbounce")
#: the vendor's own field names, in column order (a row gets them as ``<vocabulary>_<name>``)
VENDOR_FIELDS: dict[str, tuple[str, ...]] = {
    "mailsift": (),
    "kickbox": ("result", "reason", "accept_all"),
    "zerobounce": ("status", "sub_status"),
    "neverbounce": ("result",),
}


@dataclass(frozen=True)
class Words:
    """The vendors' words for one of our reasons (Kickbox's ``result`` is always our
    verdict: it has the same four words)."""

    reason: Reason
    kickbox_reason: str
    zerobounce_status: str
    zerobounce_sub_status: str
    neverbounce_result: str

    @property
    def verdict(self) -> str:
        return verdict_for(self.reason).value


def _w(reason: Reason, kickbox: str, zb_status: str, zb_sub: str, neverbounce: str) -> Words:
    return Words(reason, kickbox, zb_status, zb_sub, neverbounce)


_R = Reason
#: every reason, in the README's order (a test checks that none is missing)
TABLE: tuple[Words, ...] = (
    _w(_R.OK, "accepted_email", "valid", "", "valid"),
    _w(_R.SYNTAX, "invalid_email", "invalid", "failed_syntax_check", "invalid"),
    _w(_R.NO_DOMAIN, "invalid_domain", "invalid", "no_dns_entries", "invalid"),
    _w(_R.NULL_MX, "invalid_domain", "invalid", "does_not_accept_mail", "invalid"),
    _w(_R.NO_MX_HOST, "invalid_domain", "invalid", "no_dns_entries", "invalid"),
    _w(_R.MAILBOX_NOT_FOUND, "rejected_email", "invalid", "mailbox_not_found", "invalid"),
    _w(_R.MAILBOX_DISABLED, "rejected_email", "invalid", "mailbox_not_found", "invalid"),
    _w(_R.DISPOSABLE, "low_quality", "do_not_mail", "disposable", "disposable"),
    _w(_R.CATCH_ALL, "low_deliverability", "catch-all", "", "catchall"),
    _w(_R.ROLE_ACCOUNT, "low_quality", "do_not_mail", "role_based", "valid"),
    _w(_R.MAILBOX_FULL, "low_deliverability", "invalid", "mailbox_quota_exceeded", "unknown"),
    _w(_R.TIMEOUT, "timeout", "unknown", "timeout_exceeded", "unknown"),
    _w(_R.CONNECTION_FAILED, "no_connect", "unknown", "failed_smtp_connection", "unknown"),
    _w(_R.GREYLISTED, "unavailable_smtp", "unknown", "greylisted", "unknown"),
    _w(_R.DNS_ERROR, "unexpected_error", "unknown", "exception_occurred", "unknown"),
    _w(_R.SERVER_ERROR, "unavailable_smtp", "unknown", "mail_server_temporary_error", "unknown"),
    _w(_R.BLOCKED, "unavailable_smtp", "unknown", "antispam_system", "unknown"),
    _w(_R.MX_NOT_ALLOWED, "no_connect", "unknown", "failed_smtp_connection", "unknown"),
    _w(_R.SMTP_ERROR, "invalid_smtp", "unknown", "exception_occurred", "unknown"),
    _w(_R.SENDER_REJECTED, "unavailable_smtp", "unknown", "antispam_system", "unknown"),
    _w(_R.SUPPRESSED, "unexpected_error", "do_not_mail", "global_suppression", "unknown"),
    _w(_R.PROBE_BUDGET, "unavailable_smtp", "unknown", "exception_occurred", "unknown"),
    _w(_R.CHECK_FAILED, "unexpected_error", "unknown", "exception_occurred", "unknown"),
)
_BY_REASON = {w.reason.value: w for w in TABLE}
#: the words for a row whose reason is none of ours (an empty row, a newer producer's)
_UNKNOWN = _w(_R.DNS_ERROR, "unexpected_error", "unknown", "exception_occurred", "unknown")


@dataclass(frozen=True)
class Refinement:
    """Other words for ``reason`` when the row's boolean column ``flag`` is true."""

    vocabulary: str
    reason: Reason
    flag: str
    fields: tuple[tuple[str, str], ...]


#: checked in order, the first that applies wins
REFINEMENTS: tuple[Refinement, ...] = (
    Refinement("zerobounce", _R.CATCH_ALL, "role",
               (("status", "do_not_mail"), ("sub_status", "role_based_catch_all"))),
)


def check_vocabulary(name: str) -> str:
    """``name`` if it is a vocabulary, else ValueError with a one-line message.

    >>> check_vocabulary("kickbox")
    'kickbox'
    >>> check_vocabulary("Kickbox")
    Traceback (most recent call last):
    ValueError: unknown vocabulary 'Kickbox': use mailsift, kickbox, zerobounce or neverbounce
    """
    if name not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {name!r}: use {', '.join(VOCABULARIES[:-1])} "
                         f"or {VOCABULARIES[-1]}")
    return name


def vendor_fields(vocabulary: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The vendor's fields (its own names) for one flat result row (``verdict``,
    ``reason`` and the flag columns of :func:`mailsift.results.result_row`).

    A reason that is none of ours gets the vendor's words for "could not tell".

    >>> vendor_fields("kickbox", {"verdict": "undeliverable", "reason": "mailbox_not_found"})
    {'result': 'undeliverable', 'reason': 'rejected_email', 'accept_all': False}
    >>> vendor_fields("zerobounce", {"verdict": "risky", "reason": "catch_all", "role": True})
    {'status': 'do_not_mail', 'sub_status': 'role_based_catch_all'}
    >>> vendor_fields("neverbounce", {"verdict": "", "reason": ""})
    {'result': 'unknown'}
    >>> vendor_fields("mailsift", {"verdict": "risky", "reason": "catch_all"})
    {}
    """
    check_vocabulary(vocabulary)
    words = _BY_REASON.get(str(row.get("reason", "")), _UNKNOWN)
    fields: dict[str, Any]
    if vocabulary == "kickbox":
        fields = {"result": words.verdict, "reason": words.kickbox_reason,
                  "accept_all": row.get("catch_all") is True}
    elif vocabulary == "zerobounce":
        fields = {"status": words.zerobounce_status, "sub_status": words.zerobounce_sub_status}
    elif vocabulary == "neverbounce":
        fields = {"result": words.neverbounce_result}
    else:
        return {}
    for r in REFINEMENTS:
        if (r.vocabulary == vocabulary and words.reason is r.reason and words is not _UNKNOWN
                and row.get(r.flag) is True):
            fields.update(r.fields)
            break
    return fields


def words_of(vocabulary: str, field: str) -> list[str]:
    """Every word the vendor's text ``field`` can take in our rows, sorted (for the API's
    schema): the table's, the refinements' and the words for a reason none of ours.

    >>> words_of("zerobounce", "status")
    ['catch-all', 'do_not_mail', 'invalid', 'unknown', 'valid']
    """
    rows: list[dict[str, Any]] = [{"reason": w.reason.value} for w in TABLE]
    rows.append({"reason": ""})
    rows += [{"reason": r.reason.value, r.flag: True} for r in REFINEMENTS
             if r.vocabulary == vocabulary]
    return sorted({str(vendor_fields(vocabulary, row)[field]) for row in rows})


def with_vocabulary(row: dict[str, Any], vocabulary: str) -> dict[str, Any]:
    """``row`` with the vendor's fields added as ``<vocabulary>_<field>`` columns (the
    row itself for ``mailsift``)."""
    extra = vendor_fields(vocabulary, row)
    if not extra:
        return row
    return row | {f"{vocabulary}_{k}": v for k, v in extra.items()}


def vocabulary_columns(vocabulary: str) -> list[str]:
    """The columns of a result row in ``vocabulary``: ours, then the vendor's.

    >>> vocabulary_columns("zerobounce")[-2:]
    ['zerobounce_status', 'zerobounce_sub_status']
    """
    # mailsift.results imports this module: a top-level import would be a cycle
    from mailsift.results import RESULT_COLUMNS

    check_vocabulary(vocabulary)
    return RESULT_COLUMNS + [f"{vocabulary}_{f}" for f in VENDOR_FIELDS[vocabulary]]


def vocabulary_table() -> str:
    """The Markdown table of :data:`TABLE` and the refinements below it (for the README)."""
    rows = ["| verdict | reason | kickbox `result` / `reason` | zerobounce `status` / "
            "`sub_status` | neverbounce `result` |", "| --- | --- | --- | --- | --- |"]
    for w in TABLE:
        sub = f"`{w.zerobounce_sub_status}`" if w.zerobounce_sub_status else '`""`'
        rows.append(f"| `{w.verdict}` | `{w.reason.value}` | `{w.verdict}` / "
                    f"`{w.kickbox_reason}` | `{w.zerobounce_status}` / {sub} | "
                    f"`{w.neverbounce_result}` |")
    lines = ["\n".join(rows)]
    for r in REFINEMENTS:
        words = " / ".join(f"`{v}`" for _, v in r.fields)
        lines.append(f"- {r.vocabulary}: `{r.reason.value}` with `{r.flag}` true is "
                     f"{words}.")
    return "\n\n".join(lines)
