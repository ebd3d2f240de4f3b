"""A small HTTP control API for a running :class:`~tests.world.runner.World` (aiohttp).

Endpoints (loopback only):

* ``GET /stats`` — :meth:`World.stats` as JSON (``?times=1`` adds RCPT timestamps);
* ``POST /reset`` — :meth:`World.reset_stats` (``?greylist=1`` also forgets greylist
  first-seen times); answers ``{"ok": true}``;
* ``GET /health`` — ``{"ok": true}``.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp import web

from .runner import World

__all__ = ["ControlServer"]

_TRUE = {"1", "true", "yes", "on"}


class ControlServer:
    """Serves the control API of ``world`` on ``host:port`` (0 = pick a free port)."""

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"control API must listen on loopback, not {host}")
        self.world = world
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        app = web.Application()
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/reset", self._reset)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stats(self, request: web.Request) -> web.Response:
        times = request.query.get("times", "").lower() in _TRUE
        return web.json_response(self.world.stats(include_times=times))

    async def _reset(self, request: web.Request) -> web.Response:
        self.world.reset_stats()
        if request.query.get("greylist", "").lower() in _TRUE:
            self.world.reset_greylist()
        return web.json_response({"ok": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})
