"""Rich rendering of verification results (shared by the commands that show verdicts)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from checks.model import VerificationResult

__all__ = ["VERDICT_STYLE", "results_table", "details_table", "flag_words"]

VERDICT_STYLE = {"deliverable": "green", "undeliverable": "red", "risky": "yellow",
                 "unknown": "magenta"}


def flag_words(r: VerificationResult) -> str:
    f = r.evidence.flags
    words = [w for w, on in (("disposable", f.disposable), ("role", f.role), ("free", f.free),
                             ("catch-all", r.evidence.catch_all is True)) if on]
    if r.temporary:
        words.append("temporary")
    return ", ".join(words)


def _smtp(r: VerificationResult) -> str:
    smtp = r.evidence.smtp
    if smtp is None:
        return ""
    if smtp.reply is not None:
        enh = f" {smtp.reply.enhanced}" if smtp.reply.enhanced else ""
        return f"{smtp.reply.code}{enh}"
    return str(smtp.reason or "")


def _via(r: VerificationResult) -> str:
    smtp, mx = r.evidence.smtp, r.evidence.mx
    if smtp is not None and smtp.mx_host:
        return smtp.mx_host
    return mx.hosts[0].host if mx and mx.hosts else ""


def results_table(results: Sequence[VerificationResult]) -> Table:
    table = Table(show_header=True, header_style="bold", expand=False)
    for col in ("address", "verdict", "reason", "smtp", "mx", "notes"):
        table.add_column(col, overflow="fold")
    for r in results:
        style = VERDICT_STYLE.get(r.verdict.value, "")
        notes = flag_words(r)
        if r.evidence.flags.suggestion:
            notes = ", ".join(filter(None, [notes, f"did you mean {r.evidence.flags.suggestion}?"]))
        table.add_row(r.address, f"[{style}]{r.verdict.value}[/]", r.reason.value, _smtp(r),
                      _via(r), notes)
    return table


def details_table(r: VerificationResult) -> Table:
    """Evidence of one result, a row per fact."""
    ev = r.evidence
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("address", r.address), ("normalized", r.normalized or ""),
        ("verdict", f"[{VERDICT_STYLE[r.verdict.value]}]{r.verdict.value}[/] ({r.reason.value})"),
    ]
    if ev.mx is not None:
        hosts = ", ".join(f"{h.preference} {h.host} [{' '.join(h.addresses)}]" for h in ev.mx.hosts)
        rows.append(("mx", f"{ev.mx.status.value}{' (implicit)' if ev.mx.implicit else ''} "
                           f"{hosts}".strip()))
    if ev.spf is not None:
        spf = f"{ev.spf.status} {ev.spf.record or ''}".strip()
        if ev.spf.record is not None:
            spf += f" ({ev.spf.lookups} lookups, all={ev.spf.all_qualifier or '-'})"
        rows.append(("spf", "; ".join([spf, *ev.spf.errors[:3]])))
    if ev.dmarc is not None:
        source = f" (from {ev.dmarc.org_domain})" if ev.dmarc.org_domain else ""
        rows.append(("dmarc", f"{ev.dmarc.status} p={ev.dmarc.policy or '-'}{source}"))
    if ev.dkim is not None:
        rows.append(("dkim", f"{ev.dkim.status} {' '.join(ev.dkim.selectors)}".strip()))
    if ev.smtp is not None and ev.smtp.reply is not None:
        reply = ev.smtp.reply
        rows.append(("smtp", f"{reply.code} {reply.enhanced or ''} {reply.message}"
                             f" (via {ev.smtp.mx_host} {ev.smtp.mx_address})"))
    if ev.catch_all is not None:
        rows.append(("catch-all", "yes" if ev.catch_all else "no"))
    if flag_words(r):
        rows.append(("flags", flag_words(r)))
    if ev.flags.suggestion:
        rows.append(("suggestion", ev.flags.suggestion))
    if ev.error:
        rows.append(("detail", ev.error))
    rows.append(("timings", ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in ev.timings.items())))
    for k, v in rows:
        table.add_row(k, v)
    return table


def console(*, stderr: bool = False) -> Console:
    """A console that stays readable when output is not a terminal (pipes, CI logs)."""
    c = Console(highlight=False, stderr=stderr)
    if not c.is_terminal:
        c = Console(highlight=False, stderr=stderr, width=max(c.width, 140))
    return c


def show(console: Console, results: Sequence[VerificationResult]) -> None:
    if len(results) == 1:
        console.print(details_table(results[0]))
    else:
        console.print(results_table(results))
