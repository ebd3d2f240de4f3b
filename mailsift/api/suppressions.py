"""``/v1/suppressions``: the suppression list over HTTP (the same list as
``mailsift suppress``, in Redis).

* ``GET /v1/suppressions``: every entry, ``{"entries": [{"kind", "entry"}], "count"}``;
* ``POST /v1/suppressions`` with ``{"entries": ["example.com", "jane@other.org"]}``:
  adds them (all or none: one that is neither a domain nor an address is a 422);
* ``DELETE /v1/suppressions/{entry}``: takes one off (404 when it was not on the list).

The list holds for every job of every token, so only an admin token manages it (403).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from checks.suppression import entry_key, entry_text
from mailsift.api.access import require_admin
from mailsift.api.errors import ApiError
from mailsift.api.handlers import _body, _json_object, only_params
from mailsift.api.state import STATE
from sinks.redis_suppression import RedisSuppressionList

__all__ = ["list_suppressions", "add_suppressions", "remove_suppression", "MAX_ENTRIES"]

#: entries one POST may add
MAX_ENTRIES = 10_000


def _list(request: web.Request) -> RedisSuppressionList:
    require_admin(request)
    state = request.app[STATE]
    return RedisSuppressionList(state.redis, prefix=state.settings.redis_prefix)


async def list_suppressions(request: web.Request) -> web.Response:
    """``GET /v1/suppressions``."""
    only_params(request)
    keys = await _list(request).keys()
    entries = [{"kind": k.partition(":")[0], "entry": entry_text(k)} for k in keys]
    return web.json_response({"entries": entries, "count": len(entries)})


async def add_suppressions(request: web.Request) -> web.Response:
    """``POST /v1/suppressions``."""
    only_params(request)
    suppressions = _list(request)
    data = _json_object(await _body(request, "application/json"), {"entries"})
    entries: Any = data.get("entries")
    if (not isinstance(entries, list) or not entries or len(entries) > MAX_ENTRIES
            or not all(isinstance(e, str) for e in entries)):
        raise ApiError(422, "invalid_request",
                       f"'entries' must be a list of 1 to {MAX_ENTRIES} strings")
    try:
        distinct = len({entry_key(e) for e in entries})
    except ValueError as exc:  # before anything is added
        raise ApiError(422, "invalid_entry", str(exc)) from None
    added = await suppressions.add(entries)
    return web.json_response({"added": added, "already": distinct - added})


async def remove_suppression(request: web.Request) -> web.Response:
    """``DELETE /v1/suppressions/{entry}``."""
    only_params(request)
    suppressions = _list(request)
    entry = request.match_info["entry"]
    try:
        entry_key(entry)
    except ValueError as exc:
        raise ApiError(404, "not_found", f"not on the suppression list: {exc}") from None
    if not await suppressions.remove([entry]):
        raise ApiError(404, "not_found", f"{entry!r} is not on the suppression list")
    return web.json_response({"removed": entry})
