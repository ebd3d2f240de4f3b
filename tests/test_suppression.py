"""The suppression list: its keys (pure), the Redis list, and ``mailsift suppress``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from checks.suppression import candidates, entry_key
from checks.syntax import parse_address
from mailsift.settings import Settings


@pytest.mark.parametrize("text,key", [
    ("example.com", "domain:example.com"), (" EXAMPLE.com. ", "domain:example.com"),
    ("Jane.Doe@Example.com", "address:jane.doe@example.com"),
    ("bücher.de", "domain:xn--bcher-kva.de"), ("ann@ok.test", "address:ann@ok.test"),
    # the addresses' IDNA form (UTS-46: ß stays ß), not IDNA 2003's strasse.de
    ("straße.de", "domain:xn--strae-oqa.de"),
])
def test_entry_keys(text: str, key: str) -> None:
    assert entry_key(text) == key


@pytest.mark.parametrize("text", ["", "two words", "-bad.com", "a..b", "x@", "@x.com"])
def test_an_entry_that_is_neither_is_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        entry_key(text)
    assert "\n" not in str(info.value)


def test_a_domain_entry_covers_every_name_under_it_and_no_sibling() -> None:
    parsed = parse_address("a@mx.news.example.com")
    assert not isinstance(parsed, type(None))
    keys = candidates(parsed)  # type: ignore[arg-type]
    assert "domain:example.com" in keys and "domain:news.example.com" in keys
    assert "domain:ample.com" not in keys and "domain:otherexample.com" not in keys


@pytest.mark.stack
def test_the_redis_list_and_the_cli(stack: Settings) -> None:
    from sinks.redis_client import redis_client
    from sinks.redis_suppression import RedisSuppressionList

    prefix = f"sup-{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "MAILSIFT_REDIS_PREFIX": prefix}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailsift.cli.main", "suppress", *args],
                              env=env, capture_output=True, text=True, timeout=60)

    added = cli("add", "example.com", "Jane@Other.ORG", "Example.COM")
    assert added.returncode == 0 and added.stdout.strip() == "2 added, 0 already on the list"
    assert cli("list").stdout.splitlines() == ["address jane@other.org", "domain example.com"]
    bad = cli("add", "ok.com", "no such thing")
    assert bad.returncode == 2 and "'no such thing' is neither a domain nor an address" in (
        bad.stderr) and len(bad.stderr.strip().splitlines()) == 1
    assert "ok.com" not in cli("list").stdout  # nothing of a refused command was added

    async def check() -> list[str | None]:
        client = redis_client(stack.redis_url)
        try:
            listed = RedisSuppressionList(client, prefix=prefix)
            assert await listed.keys() == ["address:jane@other.org", "domain:example.com"]
            found = await listed.matching([
                candidates(p) for p in (parse_address(e) for e in (  # type: ignore[misc]
                    "a@mail.example.com", "jane@other.org", "joe@other.org"))])
            await client.delete(listed.key)
            return found
        finally:
            await client.aclose()

    removed = cli("remove", "jane@other.org", "nobody@x.org")
    assert removed.stdout.strip() == "1 removed, 1 were not on the list"
    assert cli("add", "jane@other.org").returncode == 0
    assert asyncio.run(check()) == ["domain:example.com", "address:jane@other.org", None]
