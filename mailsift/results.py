"""Verdicts as flat result rows: the columns users get from ``validate``, ``results`` and
the HTTP API, and their CSV / JSON-lines writers (one place, so they never drift apart)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["VERDICTS", "VERDICT_LIST", "parse_verdicts", "merged_columns", "merged_row",
           "RESULT_COLUMNS", "result_row", "write_rows"]

RESULT_COLUMNS = ["email", "normalized", "verdict", "reason", "score", "provider",
                  "suggestion", "disposable", "role", "free", "catch_all", "mx", "spf",
                  "dmarc", "dkim", "smtp_code", "smtp_message", "checked_at"]


#: the verdicts, in the order results and summaries show them
VERDICTS = ("deliverable", "undeliverable", "risky", "unknown")
#: the API's ``?verdict=``: a comma list of verdicts, exactly (the CLI's is looser)
VERDICT_LIST = "^({v})(,({v}))*$".format(v="|".join(VERDICTS))


def parse_verdicts(text: str | None) -> set[str] | None:
    """A comma list of verdicts (``--verdict``, ``?verdict=``) as a set, None for every
    verdict; :class:`ValueError` (one line) for an unknown one.

    >>> sorted(parse_verdicts("Risky, deliverable"))
    ['deliverable', 'risky']
    >>> parse_verdicts("good")
    Traceback (most recent call last):
    ...
    ValueError: expected a comma list of deliverable, undeliverable, risky, unknown, got 'good'
    """
    if text is None:
        return None
    chosen = {v.strip().lower() for v in text.split(",") if v.strip()}
    if not chosen or chosen - set(VERDICTS):
        raise ValueError(f"expected a comma list of {', '.join(VERDICTS)}, got {text!r}")
    return chosen


def result_row(v: Any) -> dict[str, Any]:
    """One flat row of results (the CSV/JSONL columns) from a verdict event."""
    ev = v.evidence or {}
    flags = ev.get("flags") or {}
    mx = ev.get("mx") or {}
    smtp = ev.get("smtp") or {}
    reply = smtp.get("reply") or {}
    return {
        "email": v.email, "normalized": v.normalized or "", "verdict": v.verdict,
        "reason": v.reason,
        "score": "" if getattr(v, "score", None) is None else v.score,
        "provider": ev.get("provider") or "",
        "suggestion": flags.get("suggestion") or "",
        "disposable": bool(flags.get("disposable")), "role": bool(flags.get("role")),
        "free": bool(flags.get("free")),
        "catch_all": "" if ev.get("catch_all") is None else bool(ev.get("catch_all")),
        "mx": " ".join(h["host"] for h in mx.get("hosts") or []),
        "spf": (ev.get("spf") or {}).get("status", ""),
        "dmarc": (ev.get("dmarc") or {}).get("policy") or (ev.get("dmarc") or {}).get("status", ""),
        "dkim": (ev.get("dkim") or {}).get("status", ""),
        "smtp_code": reply.get("code", ""), "smtp_message": reply.get("message", ""),
        "checked_at": v.checked_at,
    }


def merged_columns(original: Sequence[str], ours: Sequence[str]
                   ) -> tuple[list[str], dict[str, str]]:
    """The columns of a result file that keeps its input's: the input's first, in their
    order, then ours. One of ours whose name an input column already has (in any case)
    gets a ``mailsift_`` prefix, so no input column is ever overwritten.

    >>> merged_columns(["name", "Email"], ["email", "reason"])
    (['name', 'Email', 'mailsift_email', 'reason'], {'email': 'mailsift_email'})
    """
    taken = {c.lower() for c in original}
    rename = {c: f"mailsift_{c}" for c in ours if c.lower() in taken}
    return [*original, *(rename.get(c, c) for c in ours)], rename


def merged_row(original: dict[str, str] | None, result: dict[str, Any],
               rename: dict[str, str]) -> dict[str, Any]:
    """An input row with our result columns after it (named as :func:`merged_columns`
    says)."""
    row: dict[str, Any] = dict(original or {})
    for key, value in result.items():
        row[rename.get(key, key)] = value
    return row


def write_rows(rows: Iterable[dict[str, Any]], fmt: str, out: Any,
               columns: Sequence[str] = RESULT_COLUMNS) -> None:
    """Write ``rows`` (any iterable: each is written as it comes) as CSV (``columns``, by
    default ours; see :func:`mailsift.vocabulary.vocabulary_columns`) or JSON lines (each
    row as it is)."""
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    elif fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")
