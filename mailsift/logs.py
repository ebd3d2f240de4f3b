"""What our processes log about the people on a list: no full address at INFO or above.

A list is other people's addresses, and logs travel further than the database (log
shippers, tickets, screenshots). :func:`install_masking` makes every log record of the
process, ours and the libraries' (Faust, aiohttp, aiokafka), mask the local part of any
address in its message and its traceback once its level is INFO or above:
``jane.doe@example.com`` becomes ``j***@example.com``. DEBUG records keep the full text,
so an operator who turns DEBUG on for one worker sees SMTP transcripts whole.

It works at record creation (:func:`logging.setLogRecordFactory`), not in a handler, so
it holds whatever handlers Faust's worker or aiohttp install later.

>>> mask_text("550 5.1.1 <jane.doe@example.com>: Recipient address rejected")
'550 5.1.1 <j***@example.com>: Recipient address rejected'
>>> mask_text("no address here, 127.0.0.1:25")
'no address here, 127.0.0.1:25'
"""

from __future__ import annotations

import logging
import os
import re
import socket
import traceback
from typing import Any

from agents.logcontext import JOB_ID, STAGE

__all__ = ["mask_address", "mask_text", "install_masking", "strip_query", "strip_queries",
           "logging_config",
           "ContextFilter"]

# a local part and a domain as they appear in running text: no spaces, brackets, quotes
# or separators on either side of the @
_ADDRESS = re.compile(r"""([^\s@<>()\[\]{},;:"'=/\\]+)@([^\s@<>()\[\]{},;:"'=/\\]+)""")


def mask_address(address: str) -> str:
    """``address`` with its local part cut to its first character.

    >>> mask_address("jane.doe@example.com"), mask_address("@x"), mask_address("bob")
    ('j***@example.com', '***@x', 'b***')
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    return f"{local[:1]}***{at}{domain}"


def mask_text(text: str) -> str:
    """``text`` with every address in it masked (:func:`mask_address`)."""
    if "@" not in text:
        return text
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)


_URL_QUERY = re.compile(r"""(\w+://[^\s'"?#<>]*)[?#][^\s'"<>)]*""")


def strip_queries(text: str) -> str:
    """``text`` with the query string and fragment cut off every URL in it (an error
    message names a URL in its own, normalized, spelling).

    >>> strip_queries("ClientResponseError: 500, url='https://h.example/in?sig=x'")
    "ClientResponseError: 500, url='https://h.example/in'"
    """
    return _URL_QUERY.sub(r"\1", text)


def strip_query(url_or_path: str) -> str:
    """A URL or request path without its query string or fragment (a ``?token=`` must not
    reach a log).

    >>> strip_query("/v1/jobs/abc/results?token=s3cret&limit=5")
    '/v1/jobs/abc/results'
    >>> strip_query("https://hooks.example.com/in?sig=abc#x")
    'https://hooks.example.com/in'
    """
    return url_or_path.split("?", 1)[0].split("#", 1)[0]


def install_masking(threshold: int = logging.INFO) -> None:
    """From now on, records of ``threshold`` or above are created masked (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "mailsift_masking", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.levelno >= threshold:
            _mask_record(record)
        return record

    factory.mailsift_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: its parts, masked, as text
        message = f"{record.msg!r} % {record.args!r}"
    masked = mask_text(message)
    if masked != message:
        # an empty tuple, not None: Faust's formatter makes (None,) of a None and formats
        # the message with it again, which raises and loses the line
        record.msg, record.args = masked, ()
    if record.exc_info and record.exc_info[0] is not None:
        # formatted now and masked; without exc_info every formatter (the stdlib's and
        # python-json-logger's, which would format exc_info itself) writes exc_text
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = mask_text(text)
        record.exc_info = None
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)


class ContextFilter(logging.Filter):
    """Gives every record ``job_id``, ``stage`` and ``worker`` (``host:pid``), for the JSON
    lines: a ``job_id`` passed in ``extra`` wins over the context's."""

    def __init__(self) -> None:
        super().__init__()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        record.stage = STAGE.get()
        record.worker = self.worker
        return True


_LEVELS = {"crit": "CRITICAL", "warn": "WARNING"}
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s %(stage)s %(worker)s"


def logging_config(log_format: str, level: str | int = "INFO") -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of a worker or the API: one stderr handler,
    text or JSON (``MAILSIFT_LOG_FORMAT``).

    >>> logging_config("json")["formatters"]["default"]["()"]
    'pythonjsonlogger.json.JsonFormatter'
    """
    if isinstance(level, str):  # the worker's --loglevel words
        level = _LEVELS.get(level.lower(), level.upper())
    formatter: dict[str, Any] = {"format": _TEXT}
    if log_format == "json":
        formatter = {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": _JSON_FIELDS,
                     "rename_fields": {"levelname": "level", "asctime": "time",
                                       "name": "logger"}}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                 "formatter": "default", "filters": ["context"]}},
        "root": {"level": level, "handlers": ["default"]},
    }
