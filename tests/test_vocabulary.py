"""Other verifiers' status words (``mailsift/vocabulary.py``): every reason has them, rows
keep their own columns and gain the vendor's, CSV and JSONL carry them. No services."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace
from typing import Any

import pytest

from checks.model import INDETERMINATE, PERMANENT_FAILURES, RISKY_REASONS, Reason, Verdict
from mailsift.results import RESULT_COLUMNS, result_row, write_rows
from mailsift.vocabulary import (
    REFINEMENTS,
    TABLE,
    VENDOR_FIELDS,
    VOCABULARIES,
    check_vocabulary,
    vendor_fields,
    vocabulary_columns,
    with_vocabulary,
    words_of,
)

VENDORS = [v for v in VOCABULARIES if v != "mailsift"]
#: the words each vendor documents (its API reference), nothing else may come out
DOCUMENTED = {
    ("kickbox", "result"): {"deliverable", "undeliverable", "risky", "unknown"},
    ("kickbox", "reason"): {"invalid_email", "invalid_domain", "rejected_email",
                            "accepted_email", "low_quality", "low_deliverability",
                            "no_connect", "timeout", "invalid_smtp", "unavailable_smtp",
                            "unexpected_error"},
    ("zerobounce", "status"): {"valid", "invalid", "catch-all", "unknown", "spamtrap",
                               "abuse", "do_not_mail"},
    ("zerobounce", "sub_status"): {
        "", "antispam_system", "greylisted", "mail_server_temporary_error",
        "forcible_disconnect", "mail_server_did_not_respond", "timeout_exceeded",
        "failed_smtp_connection", "mailbox_quota_exceeded", "exception_occurred",
        "possible_trap", "role_based", "global_suppression", "mailbox_not_found",
        "no_dns_entries", "failed_syntax_check", "possible_typo", "unroutable_ip_address",
        "leading_period_removed", "does_not_accept_mail", "alias_address",
        "role_based_catch_all", "disposable", "toxic"},
    ("neverbounce", "result"): {"valid", "invalid", "disposable", "catchall", "unknown"},
}


def row(reason: Reason, **flags: Any) -> dict[str, Any]:
    from checks.verdict import verdict_for

    return {"verdict": verdict_for(reason).value, "reason": reason.value, "disposable": False,
            "role": False, "free": False, "catch_all": "", **flags}


def test_every_reason_has_words_exactly_once() -> None:
    # a new Reason without a row here fails this test: add it to TABLE (and the README)
    assert sorted(w.reason for w in TABLE) == sorted(Reason)


@pytest.mark.parametrize("vocabulary", VENDORS)
@pytest.mark.parametrize("reason", list(Reason))
def test_every_word_is_one_the_vendor_documents(vocabulary: str, reason: Reason) -> None:
    for flags in ({}, {"role": True}, {"disposable": True}, {"catch_all": True}):
        fields = vendor_fields(vocabulary, row(reason, **flags))
        assert tuple(fields) == VENDOR_FIELDS[vocabulary]
        for name, value in fields.items():
            if isinstance(value, bool):
                continue
            assert value in DOCUMENTED[(vocabulary, name)], (reason, flags, name, value)


def test_kickbox_result_is_our_verdict() -> None:
    for reason in Reason:
        r = row(reason)
        assert vendor_fields("kickbox", r)["result"] == r["verdict"]


def test_strength_follows_our_verdict() -> None:
    """A permanent failure is never a vendor's valid; an unknown of ours is never a
    vendor's valid or invalid (the documented exceptions are risky ones)."""
    for reason in PERMANENT_FAILURES:
        assert vendor_fields("zerobounce", row(reason))["status"] == "invalid"
        assert vendor_fields("neverbounce", row(reason))["result"] == "invalid"
    for reason in INDETERMINATE - {Reason.SUPPRESSED}:
        assert vendor_fields("zerobounce", row(reason))["status"] == "unknown"
        assert vendor_fields("neverbounce", row(reason))["result"] == "unknown"
    for reason in RISKY_REASONS:
        assert vendor_fields("kickbox", row(reason))["result"] == "risky"
    assert vendor_fields("zerobounce", row(Reason.OK)) == {"status": "valid", "sub_status": ""}
    # the documented exception: ZeroBounce has words of its own for a suppressed address
    assert vendor_fields("zerobounce", row(Reason.SUPPRESSED)) == {
        "status": "do_not_mail", "sub_status": "global_suppression"}


@pytest.mark.parametrize(("vocabulary", "reason", "flags", "expected"), [
    ("kickbox", Reason.CATCH_ALL, {"catch_all": True},
     {"result": "risky", "reason": "low_deliverability", "accept_all": True}),
    ("kickbox", Reason.MAILBOX_NOT_FOUND, {},
     {"result": "undeliverable", "reason": "rejected_email", "accept_all": False}),
    ("kickbox", Reason.SYNTAX, {}, {"result": "undeliverable", "reason": "invalid_email",
                                    "accept_all": False}),
    ("kickbox", Reason.NULL_MX, {}, {"result": "undeliverable", "reason": "invalid_domain",
                                     "accept_all": False}),
    ("kickbox", Reason.TIMEOUT, {}, {"result": "unknown", "reason": "timeout",
                                     "accept_all": False}),
    ("zerobounce", Reason.CATCH_ALL, {"catch_all": True},
     {"status": "catch-all", "sub_status": ""}),
    ("zerobounce", Reason.CATCH_ALL, {"catch_all": True, "role": True},
     {"status": "do_not_mail", "sub_status": "role_based_catch_all"}),
    ("zerobounce", Reason.ROLE_ACCOUNT, {"role": True},
     {"status": "do_not_mail", "sub_status": "role_based"}),
    ("zerobounce", Reason.DISPOSABLE, {"disposable": True},
     {"status": "do_not_mail", "sub_status": "disposable"}),
    ("zerobounce", Reason.MAILBOX_NOT_FOUND, {},
     {"status": "invalid", "sub_status": "mailbox_not_found"}),
    ("zerobounce", Reason.SYNTAX, {}, {"status": "invalid", "sub_status": "failed_syntax_check"}),
    ("zerobounce", Reason.NO_DOMAIN, {}, {"status": "invalid", "sub_status": "no_dns_entries"}),
    ("zerobounce", Reason.TIMEOUT, {}, {"status": "unknown", "sub_status": "timeout_exceeded"}),
    ("zerobounce", Reason.GREYLISTED, {}, {"status": "unknown", "sub_status": "greylisted"}),
    ("neverbounce", Reason.CATCH_ALL, {"catch_all": True}, {"result": "catchall"}),
    ("neverbounce", Reason.DISPOSABLE, {"disposable": True}, {"result": "disposable"}),
    ("neverbounce", Reason.ROLE_ACCOUNT, {"role": True}, {"result": "valid"}),
    ("neverbounce", Reason.OK, {}, {"result": "valid"}),
    ("neverbounce", Reason.MAILBOX_DISABLED, {}, {"result": "invalid"}),
])
def test_chosen_words(vocabulary: str, reason: Reason, flags: dict[str, Any],
                      expected: dict[str, Any]) -> None:
    assert vendor_fields(vocabulary, row(reason, **flags)) == expected


def test_refinements_are_for_known_vocabularies_and_fields() -> None:
    for r in REFINEMENTS:
        assert r.vocabulary in VENDORS and r.flag in RESULT_COLUMNS
        assert {k for k, _ in r.fields} <= set(VENDOR_FIELDS[r.vocabulary])


def test_a_reason_that_is_not_ours_is_the_vendors_unknown() -> None:
    for reason in ("", "something_new"):
        r = {"verdict": "", "reason": reason, "role": True}
        assert vendor_fields("kickbox", r)["result"] == "unknown"
        assert vendor_fields("zerobounce", r) == {"status": "unknown",
                                                  "sub_status": "exception_occurred"}
        assert vendor_fields("neverbounce", r) == {"result": "unknown"}


def test_unknown_vocabulary_is_one_line() -> None:
    with pytest.raises(ValueError, match="^unknown vocabulary 'briteverify': use mailsift, "
                                         "kickbox, zerobounce or neverbounce$"):
        check_vocabulary("briteverify")
    with pytest.raises(ValueError):
        vendor_fields("Kickbox", row(Reason.OK))
    with pytest.raises(ValueError):
        vocabulary_columns("")


# --------------------------------------------------------------------------- rows


def verdict_event(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "email": "info@catchall.test", "normalized": "info@catchall.test",
        "verdict": Verdict.RISKY.value, "reason": Reason.CATCH_ALL.value, "score": 60,
        "checked_at": "2026-11-25T14:00:03.120Z",
        "evidence": {"flags": {"role": True, "free": False, "disposable": False},
                     "catch_all": True,
                     "smtp": {"reply": {"code": 250, "message": "OK"}}}}
    return SimpleNamespace(**(base | kw))


def test_mailsift_vocabulary_leaves_the_row_alone() -> None:
    r = result_row(verdict_event())
    assert with_vocabulary(r, "mailsift") == r
    assert vocabulary_columns("mailsift") == RESULT_COLUMNS


@pytest.mark.parametrize("vocabulary", VENDORS)
def test_rows_keep_our_columns_and_add_the_vendors(vocabulary: str) -> None:
    ours = result_row(verdict_event())
    r = with_vocabulary(ours, vocabulary)
    columns = vocabulary_columns(vocabulary)
    assert list(r) == columns  # ours, in order, then the vendor's
    assert {k: r[k] for k in RESULT_COLUMNS} == ours
    assert columns[len(RESULT_COLUMNS):] == [f"{vocabulary}_{f}"
                                             for f in VENDOR_FIELDS[vocabulary]]


def test_csv_and_jsonl_carry_the_vendor_columns() -> None:
    rows = [with_vocabulary(result_row(verdict_event()), "zerobounce"),
            with_vocabulary(result_row(verdict_event(
                email="nobody@ok.test", verdict="undeliverable", reason="mailbox_not_found",
                evidence={})), "zerobounce")]
    buf = io.StringIO()
    write_rows(rows, "csv", buf, vocabulary_columns("zerobounce"))
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert list(table[0]) == RESULT_COLUMNS + ["zerobounce_status", "zerobounce_sub_status"]
    assert [(t["reason"], t["zerobounce_status"], t["zerobounce_sub_status"]) for t in table] \
        == [("catch_all", "do_not_mail", "role_based_catch_all"),
            ("mailbox_not_found", "invalid", "mailbox_not_found")]
    buf = io.StringIO()
    write_rows(rows, "jsonl", buf)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines == rows
    # the default column set is unchanged
    buf = io.StringIO()
    write_rows(rows, "csv", buf)
    assert buf.getvalue().splitlines()[0] == ",".join(RESULT_COLUMNS)


def test_kickbox_accept_all_is_our_catch_all() -> None:
    for catch_all, expected in ((True, True), (False, False), (None, False)):
        ev = {"catch_all": catch_all} if catch_all is not None else {}
        r = with_vocabulary(result_row(verdict_event(
            verdict="deliverable", reason="ok", evidence=ev)), "kickbox")
        assert r["kickbox_accept_all"] is expected
        assert r["catch_all"] == ("" if catch_all is None else catch_all)


def test_openapi_describes_every_word() -> None:
    from mailsift.api.openapi import openapi_document

    doc = openapi_document()
    props = doc["components"]["schemas"]["ResultRow"]["properties"]
    for vocabulary in VENDORS:
        for f in VENDOR_FIELDS[vocabulary]:
            assert f"{vocabulary}_{f}" in props
    for reason in Reason:
        for vocabulary in VENDORS:
            for flags in ({}, {"role": True}):
                for f, v in vendor_fields(vocabulary, row(reason, **flags)).items():
                    schema = props[f"{vocabulary}_{f}"]
                    assert v in schema.get("enum", [v]), (vocabulary, f, v)
    results = doc["paths"]["/v1/jobs/{job_id}/results"]["get"]["parameters"]
    verify = doc["paths"]["/v1/verify"]["post"]["parameters"]
    for params in (results, verify):
        vocab = next(p for p in params if p["name"] == "vocabulary")
        assert vocab["schema"]["enum"] == list(VOCABULARIES)


@pytest.mark.parametrize("vocabulary,field", [
    (v, f) for v in VENDORS for f in VENDOR_FIELDS[v] if f != "accept_all"])
def test_words_of_holds_every_word_a_row_can_get(vocabulary: str, field: str) -> None:
    words = words_of(vocabulary, field)
    seen = {vendor_fields(vocabulary, row(reason, **flags))[field]
            for reason in Reason for flags in ({}, {"role": True}, {"catch_all": True})}
    seen.add(vendor_fields(vocabulary, {"verdict": "", "reason": "new"})[field])
    assert sorted(seen) == words
