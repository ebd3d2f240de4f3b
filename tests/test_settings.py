"""Settings: defaults, parsing, and one-line errors naming the variable."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailsift.settings import Nameserver, SettingsError, load_settings


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings({})
    assert s.kafka_broker == "kafka://127.0.0.1:19092"
    assert s.smtp_port == 25
    assert s.dns_nameservers == ()
    assert s.mx_allowed_networks == ()
    assert s.allow_test_tld is False


def test_nameservers_and_networks_parse() -> None:
    s = load_settings({
        "MAILSIFT_DNS_NAMESERVERS": "127.0.2.1:5353, 127.0.0.1,[::1]:53",
        "MAILSIFT_MX_ALLOWED_NETWORKS": "127.0.0.0/8, 10.1.0.0/16",
    })
    assert s.dns_nameservers == (
        Nameserver("127.0.2.1", 5353), Nameserver("127.0.0.1", 53), Nameserver("::1", 53)
    )
    assert ipaddress.ip_address("127.9.9.9") in s.mx_allowed_networks[0]


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MAILSIFT_SMTP_PORT", "smtp", "an integer from 1 to 65535"),
        ("MAILSIFT_SMTP_PORT", "70000", "an integer from 1 to 65535"),
        ("MAILSIFT_DNS_NAMESERVERS", "ns1.example.com", "ip or ip:port"),
        ("MAILSIFT_DNS_NAMESERVERS", "127.0.0.1:99999", "ip or ip:port"),
        ("MAILSIFT_MX_ALLOWED_NETWORKS", "127.0.0.0/40", "CIDR"),
        ("MAILSIFT_KAFKA_BROKER", "127.0.0.1:9092", "kafka://"),
        ("MAILSIFT_DATABASE_URL", "mysql://x@y/z", "postgresql://"),
        ("MAILSIFT_MAIL_FROM", "a@b\r\nDATA", "an address"),
        ("MAILSIFT_DNS_TIMEOUT", "-1", "positive"),
        ("MAILSIFT_ALLOW_TEST_TLD", "maybe", "true or false"),
    ],
)
def test_wrong_value_names_the_variable(var: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({var: value})
    message = str(info.value)
    assert message.startswith(f"{var}: expected ")
    assert expected in message
    assert "\n" not in message


def test_empty_optional_urls_disable() -> None:
    s = load_settings({"MAILSIFT_REDIS_URL": "", "MAILSIFT_AMQP_URL": ""})
    assert s.redis_url == "" and s.amqp_url == ""


def test_cli_prints_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "MAILSIFT_SMTP_PORT": "abc"}
    result = subprocess.run(
        [sys.executable, "-m", "mailsift.cli.main", "config"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MAILSIFT_SMTP_PORT" in lines[0] and "Traceback" not in result.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILSIFT_SMTP_PORT=2525\n")
    code = "from mailsift.settings import load_settings; print(load_settings().smtp_port)"
    env = {k: v for k, v in os.environ.items() if k != "MAILSIFT_SMTP_PORT"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "2525", result.stderr
