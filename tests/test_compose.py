"""docker-compose.yml: the production stack is complete and its settings are valid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mailsift.settings import load_settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with every VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_api_environment_passes_settings_validation() -> None:
    api = load()["services"]["api"]
    env = {k: _interpolate(str(v)) for k, v in api["environment"].items()
           if not str(v).startswith("${MAILSIFT_API_TOKENS")}
    env["MAILSIFT_API_TOKENS"] = "a-token"
    assert load_settings(env, dotenv=False).api_tokens == ("a-token",)


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_services_and_healthchecks() -> None:
    services = load()["services"]
    assert {"kafka", "postgres", "redis", "rabbitmq", "worker", "migrate", "api"} <= set(services)
    assert "healthcheck" in services["api"] and services["api"]["ports"]
    for name in ("kafka", "postgres", "redis", "rabbitmq"):
        assert "healthcheck" in services[name], name
        assert services[name].get("volumes"), name
    assert "KRaft" in COMPOSE.read_text() or "controller" in str(services["kafka"])
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    for dep in ("kafka", "postgres", "redis", "rabbitmq"):
        assert worker["depends_on"][dep]["condition"] == "service_healthy"


def test_worker_environment_passes_settings_validation() -> None:
    env = {k: _interpolate(str(v)) for k, v in load()["services"]["worker"]["environment"].items()}
    settings = load_settings(env, dotenv=False)
    assert settings.kafka_broker == "kafka://kafka:9092"
    assert settings.database_url.startswith("postgresql://mailsift:")
    assert settings.mx_allowed_networks == ()  # production probes public MX hosts only


def test_docker_compose_config_accepts_the_file() -> None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        result = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "MAILSIFT_API_TOKENS": "a-token"})
        if "unknown command" in result.stderr or "unknown shorthand" in result.stderr:
            continue  # a docker client without the compose plugin
        assert result.returncode == 0, result.stderr
        return
    # without any compose binary the two structural tests above still judge the file


def test_workers_get_longer_to_stop_than_their_drain() -> None:
    """Docker SIGKILLs after ``stop_grace_period`` (default 10 s): it must exceed the
    worker's drain, or a compose stop would kill it mid-drain."""
    worker = load()["services"]["worker"]
    env = {k: _interpolate(str(v)) for k, v in worker["environment"].items()}
    drain = load_settings(env, dotenv=False).drain_seconds
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= drain + 10, (grace, drain)
    redis = load()["services"]["redis"]["command"]
    assert "--appendonly" in redis and "always" in redis  # the job state is durable
