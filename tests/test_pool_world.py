"""Pools, pipelining and RCPT pacing against the simulated world's real sockets."""

from __future__ import annotations

import pytest

from checks import Engine
from checks.model import Verdict
from tests.test_engine_world import config_for
from tests.world import World
from tests.world.default import bulk_world
from tests.world.smtp_server import max_rate

pytestmark = [pytest.mark.world, pytest.mark.asyncio]


@pytest.mark.parametrize(("rate", "merge"), [(20.0, True), (200.0, True), (200.0, False)])
async def test_shared_mx_sessions_pipelining_and_rate_over_many_domains(
        rate: float, merge: bool) -> None:
    # 60 domains on 2 MX hosts that answer 421 above 2 connections, 20 ms per reply
    spec = bulk_world(60, 4, 2, latency=0.02, max_connections=2)
    async with World(spec) as world:
        engine = Engine(config_for(world, mx_rcpt_per_second=rate, mx_max_connections=2,
                                   check_auth_records=False, smtp_merge_domains=merge))
        emails = [f"user{j}@bulk{i}.test" for j in range(5) for i in range(60)]  # shuffled
        results = await engine.verify_many(emails)
        await engine.aclose()
        verdicts = {r.address: r.verdict for r in results}
        assert all(verdicts[f"user{j}@bulk{i}.test"] is Verdict.DELIVERABLE
                   for i in range(60) for j in range(4))
        assert all(verdicts[f"user4@bulk{i}.test"] is Verdict.UNDELIVERABLE for i in range(60))
        for server in world.smtp.servers:
            stats = server.stats
            assert stats.rejected_connections == 0 and stats.max_simultaneous <= 2
            assert stats.connections <= 4  # sessions shared by all 30 domains of the host
            assert max_rate(stats.rcpt_times, 1.0) <= rate + 1
            assert stats.rcpt == 30 * 6  # each address and catch-all probe asked once
            if merge:  # the domains waiting for the host's sessions share transactions
                assert stats.mail < 30
            else:  # a transaction per domain
                assert stats.mail == 30
        assert world.data_commands == 0
