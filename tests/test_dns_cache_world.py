"""DNS answers cached in Redis, shared by workers, respecting TTLs (against the world)."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from checks import Engine, EngineConfig
from mailsift.settings import Settings
from sinks.redis_client import redis_client
from sinks.redis_dns_cache import RedisDnsCache
from tests.world import World, default_world

pytestmark = [pytest.mark.stack, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    async with World(default_world()) as w:
        yield w


def engine(world: World, cache: RedisDnsCache) -> Engine:
    host, port = world.nameserver.rsplit(":", 1)
    config = EngineConfig(
        nameservers=((host, int(port)),), smtp_port=world.smtp_port, allow_test_tld=True,
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), dns_min_ttl=0.5,
        check_auth_records=False, mx_rcpt_per_second=1000,
    )
    return Engine(config, cache=cache)


async def test_second_lookup_hits_redis_and_expires_after_ttl(stack: Settings,
                                                              world: World) -> None:
    client = redis_client(stack.redis_url)
    prefix = f"mailsift-test:{uuid.uuid4().hex}:"
    try:
        # two engines = two workers sharing one Redis cache
        first = engine(world, RedisDnsCache(client, prefix=prefix))
        second = engine(world, RedisDnsCache(client, prefix=prefix))
        r1 = await first.verify("alice@ok.test")
        assert r1.reason.value == "ok"
        assert world.dns_queries("ok.test", "MX") == 1
        r2 = await second.verify("bob@ok.test")  # another worker: served from Redis
        assert r2.reason.value == "ok"
        assert world.dns_queries("ok.test", "MX") == 1
        assert await client.exists(f"{prefix}dns:ok.test/MX")

        # shortttl.test's MX has TTL 1 s: cached, then asked again after it expired
        await first.verify("alice@shortttl.test")
        await second.verify("bob@shortttl.test")
        assert world.dns_queries("shortttl.test", "MX") == 1
        await asyncio.sleep(1.3)
        await second.verify("carol@shortttl.test")
        assert world.dns_queries("shortttl.test", "MX") == 2

        # negative answers are cached too (briefly)
        await first.verify("a@nxdomain.test")
        await second.verify("b@nxdomain.test")
        assert world.dns_queries("nxdomain.test", "MX") == 1
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
