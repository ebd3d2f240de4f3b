"""Request bodies of ``POST /v1/jobs``: a JSON object or a CSV upload.

:func:`csv_rows` (from :mod:`mailsift.inputs`) reads CSV uploads exactly as the CLI
reads CSV files: the column is matched case-insensitively, blank values are skipped.

>>> [r.email for r in csv_rows("name,Email\\nAnn,ann@example.com\\nBob,\\n", "email")]
['ann@example.com']
>>> csv_rows("name\\nAnn\\n", "email", hint="choose one with ?column=")
Traceback (most recent call last):
...
mailsift.inputs.InputError: no column 'email' (columns: name; choose one with ?column=)
>>> check_emails(["a@b.test", " "])
Traceback (most recent call last):
...
mailsift.inputs.InputError: emails[1] is empty
"""

from __future__ import annotations

from typing import Any

from mailsift.inputs import InputError, csv_rows

__all__ = ["csv_rows", "check_emails"]


def check_emails(emails: Any) -> list[str]:
    """``emails`` as a list of submittable strings, or :class:`InputError` saying why.

    The addresses themselves are judged by the pipeline: anything that is not an address
    (a NUL, a lone surrogate, 5,000 characters) gets a ``syntax`` verdict, exactly as the
    same line would from ``mailsift validate`` (``schemas.submission.submittable_email``).
    Here each must only be a non-blank string.

    >>> check_emails(["a\\u0000b@ok.test"]) == ["a\\u0000b@ok.test"]
    True
    """
    if not isinstance(emails, list):
        raise InputError("'emails' must be an array of strings")
    out: list[str] = []
    for i, email in enumerate(emails):
        if not isinstance(email, str):
            raise InputError(f"emails[{i}] must be a string, got {type(email).__name__}")
        if not email.strip():
            raise InputError(f"emails[{i}] is empty")
        out.append(email)
    return out
