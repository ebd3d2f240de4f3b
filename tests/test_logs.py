"""No full address in a log at INFO or above; no query string in the API's access log."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsift.logs import install_masking, logging_config, mask_text


@pytest.fixture
def masked() -> Iterator[None]:
    before = logging.getLogRecordFactory()
    install_masking()
    try:
        yield
    finally:
        logging.setLogRecordFactory(before)


def test_info_and_above_mask_the_local_part_debug_keeps_it(
        masked: None, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mailsift.test")
    with caplog.at_level(logging.DEBUG, logger="mailsift.test"):
        log.info("verified %s: %s", "jane.doe@example.com", "ok")
        log.warning("550 <bob@Example.ORG> and carol+tag@sub.example.net rejected")
        log.debug("transcript: RCPT TO:<jane.doe@example.com>")
    info, warning, debug = (r.getMessage() for r in caplog.records)
    assert info == "verified j***@example.com: ok"
    assert warning == "550 <b***@Example.ORG> and c***@sub.example.net rejected"
    assert debug == "transcript: RCPT TO:<jane.doe@example.com>"


def test_a_traceback_is_masked_too(masked: None, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mailsift.test")
    with caplog.at_level(logging.INFO, logger="mailsift.test"):
        try:
            raise ValueError("cannot handle jane.doe@example.com")
        except ValueError:
            log.exception("stage failed")
    text = caplog.text
    assert "ValueError: cannot handle j***@example.com" in text
    assert "jane.doe@" not in text


def test_installing_twice_masks_once(masked: None, caplog: pytest.LogCaptureFixture) -> None:
    install_masking()
    with caplog.at_level(logging.INFO, logger="mailsift.test"):
        logging.getLogger("mailsift.test").info("%s", "ann@example.com")
    assert caplog.records[0].getMessage() == "a***@example.com"


@pytest.mark.parametrize("text", [
    "amqp://guest:guest@127.0.0.1:5672/%2F", "jobs 3, 100 % done", "a@b", "@@",
])
def test_mask_text_never_leaves_a_local_part_longer_than_one_character(text: str) -> None:
    out = mask_text(text)
    for word in out.split():
        if "@" in word and "***@" not in word:
            assert not word.split("@")[0].strip("<(:/"), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_api_access_log_has_no_query_string_and_no_address(
        tmp_path: Path, log_format: str) -> None:
    """``mailsift api`` as a user runs it: a request with ``?token=`` is logged by its
    path alone (the token is refused, and must not reach the log either), and an address
    in a path is masked; with MAILSIFT_LOG_FORMAT=json every line is one JSON object."""
    port = _free_port()
    env = {**os.environ, "MAILSIFT_API_TOKENS": "real-token", "MAILSIFT_KAFKA_WAIT": "0",
           "MAILSIFT_LOG_FORMAT": log_format, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mailsift.cli.main", "api",
                                 "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=out, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        for path, code in [("/v1/jobs/x?token=s3cret-in-url&limit=5", 401),
                           ("/v1/verify/jane.doe@example.com", 401),
                           ("/v1/suppressions/ann.lee%40example.com", 401)]:
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(base + path, timeout=5)
            assert info.value.code == code
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    text = log_path.read_text()
    assert "s3cret-in-url" not in text and "limit=5" not in text, text
    assert "jane.doe@" not in text and "ann.lee" not in text, text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        access = [e["message"] for e in lines if e["logger"] == "aiohttp.access"]
        assert {"level", "time", "job_id", "stage", "worker"} <= set(lines[0])
    else:
        access = text.splitlines()
    assert any('"GET /v1/jobs/x" 401' in line for line in access), text
    assert any('"GET /v1/verify/j***@example.com" 401' in line for line in access), text


def test_json_lines_carry_the_stage_and_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    from agents.logcontext import STAGE

    before = logging.root.handlers[:]
    logging.config.dictConfig(logging_config("json"))
    try:
        token = STAGE.set("domain")
        logging.getLogger("mailsift.test").warning("one", extra={"job_id": "job-1"})
        STAGE.reset(token)
        logging.getLogger("mailsift.test").warning("two")
    finally:
        logging.root.handlers[:] = before
    one, two = (json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:])
    assert (one["message"], one["stage"], one["job_id"], one["level"]) == (
        "one", "domain", "job-1", "WARNING")
    assert (two["stage"], two["job_id"]) == (None, None)
    assert one["worker"].endswith(f":{os.getpid()}")


@pytest.mark.asyncio
async def test_a_webhook_failure_names_the_url_without_its_query() -> None:
    """What a failed delivery says goes to the log and the outbox: the receiver's
    ``?sig=`` stays out of both."""
    import ipaddress

    import aiohttp

    from mailsift.api.webhooks import post_once

    async with aiohttp.ClientSession() as http:
        answer = await post_once(http, "http://127.0.0.1:99999/hook?sig=s3cret", b"{}", "k",
                                 delivery_id="d", attempt=1,
                                 allowed=[ipaddress.ip_network("127.0.0.0/8")])
    assert not answer.ok and answer.retry
    assert "http://127.0.0.1:99999/hook" in answer.outcome
    assert "s3cret" not in answer.outcome


def test_a_masked_line_survives_fausts_formatter_and_json_masks_tracebacks(
        masked: None) -> None:
    """The worker's text lines go through Faust's (mode's) formatter, which formats the
    args again; JSON lines would format exc_info themselves: both must see the masking."""
    import io

    from mode.utils.logging import DefaultFormatter
    from pythonjsonlogger.json import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("mailsift.test.formatters")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    try:
        handler.setFormatter(DefaultFormatter("%(levelname)s %(message)s"))
        log.warning("verified %s", "jane.doe@example.com")
        handler.setFormatter(JsonFormatter("%(levelname)s %(message)s"))
        try:
            raise ValueError("cannot handle jane.doe@example.com")
        except ValueError:
            log.exception("failed for %s", "jane.doe@example.com")
    finally:
        log.removeHandler(handler)
    text_line, json_line = out.getvalue().splitlines()[0], out.getvalue().splitlines()[-1]
    assert text_line == "WARNING verified j***@example.com"
    assert "jane.doe@" not in out.getvalue()
    assert "ValueError: cannot handle j***@example.com" in json.loads(json_line)["exc_info"]


def test_strip_queries_cuts_every_url_in_a_text() -> None:
    from mailsift.logs import strip_queries

    text = "failed: url='HTTPS://Hook.Example/in?sig=s3cret' then http://x.test/a#frag ok"
    assert strip_queries(text) == "failed: url='HTTPS://Hook.Example/in' then http://x.test/a ok"
