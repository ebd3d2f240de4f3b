"""Reading address lists: a text file (one per line) or a CSV file (an ``email`` column)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InputError", "InputRow", "read_addresses", "csv_rows"]


class InputError(ValueError):
    """The input file cannot be used; the message is one line."""


@dataclass(frozen=True)
class InputRow:
    line: int
    email: str
    row: dict[str, str] | None = None  # the CSV row, for writing results next to it


def read_addresses(path: Path, *, column: str | None = None) -> list[InputRow]:
    """Rows of ``path`` in order. A ``.csv`` file (or ``column`` given) is read as CSV.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = Path(d, "list.txt")
    >>> _ = p.write_text("# comment\\na@b.com\\n\\n c@d.com \\n")
    >>> [r.email for r in read_addresses(p)]
    ['a@b.com', 'c@d.com']

    Lines end at ``\\n`` (a ``\\r`` before it is stripped) and nowhere else: CR, VT, FF or
    U+2028 inside a line keep it one row (an address with them gets a ``syntax`` verdict).

    >>> _ = p.write_bytes(b"a@b.com\\r\\nx\\ry@d.com\\n\\xe2\\x80\\xa8\\n")
    >>> [(r.line, r.email) for r in read_addresses(p)]
    [(1, 'a@b.com'), (2, 'x\\ry@d.com')]
    """
    try:
        # newline="": no universal newlines, which would end a line at a lone CR too
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".csv" or column is not None:
        return _read_csv(path, text, column or "email")
    return [InputRow(i, line.strip()) for i, line in enumerate(text.split("\n"), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _read_csv(path: Path, text: str, column: str) -> list[InputRow]:
    return csv_rows(text, column, source=str(path))


def csv_rows(text: str, column: str, *, source: str = "",
             hint: str = "choose one with --column") -> list[InputRow]:
    """The non-blank values of ``column`` in CSV ``text``, in order, with their rows.

    The CLI and the HTTP API read CSV through this: the column is matched
    case-insensitively, blank values are skipped, rows keep their line numbers.

    >>> [r.email for r in csv_rows("name,Email\\nAnn,ann@example.com\\nBob,\\n", "email")]
    ['ann@example.com']
    """
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    match = next((f for f in fields if f.strip().lower() == column.lower()), None)
    if match is None:
        where = f"{source}: " if source else ""
        raise InputError(f"{where}no column {column!r} (columns: {', '.join(fields) or 'none'};"
                         f" {hint})")
    rows = []
    for row in reader:
        value = (row.get(match) or "").strip()
        if value:
            rows.append(InputRow(reader.line_num, value,
                                 {k: v for k, v in row.items() if k is not None}))
    return rows
