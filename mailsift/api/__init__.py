"""mailsift's HTTP API: submit jobs, follow them, read results, verify one address.

It is a separate aiohttp application (``mailsift api``), not part of the Faust worker:

* it scales and restarts independently of the workers (any number of API instances behind
  a load balancer, however many workers there are);
* it stays up while the workers' consumer group rebalances, since it is not a member;
* it serves results from Postgres (the sink's ``verdicts`` table) and progress from the
  workers' Redis bookkeeping, and only produces to Kafka (``streams.client.submit_job``).

``create_app(settings)`` in :mod:`mailsift.api.app` builds it; the endpoints are described
by the OpenAPI document in :mod:`mailsift.api.openapi` (served at ``/openapi.json``).
"""

from __future__ import annotations

from mailsift.api.app import create_app

__all__ = ["create_app"]
