"""Dashboard logins: one Redis hash per session, shared by every API instance.

The browser holds a random session id (a cookie); Redis keeps, under the SHA-256 of that
id, the owner fingerprint of the token that logged in (never the token) and the
session's CSRF token. A session ends when its TTL does (``MAILSIFT_API_SESSION_HOURS``)
or at logout.

``{prefix}api:session:{sha256(id)}``  hash  owner, csrf, created_at

>>> RedisSessions.key_of("mailsift:", "abc")[:40]
'mailsift:api:session:ba7816bf8f01cfea414'
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import redis.asyncio

from schemas.base import utc_now_iso
from sinks.redis_client import as_text, guarded

__all__ = ["RedisSessions", "Session"]


@dataclass(frozen=True)
class Session:
    """A logged-in browser: whose it is, and the token its forms and scripts send."""

    owner: str
    csrf: str


class RedisSessions:
    """Create, read and end dashboard sessions."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "mailsift:",
                 ttl_seconds: float = 12 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = max(1, int(ttl_seconds))

    @staticmethod
    def key_of(prefix: str, session_id: str) -> str:
        return f"{prefix}api:session:{hashlib.sha256(session_id.encode()).hexdigest()}"

    async def create(self, owner: str) -> tuple[str, Session]:
        """A new session of ``owner``: its id (for the cookie) and its record."""
        session_id = secrets.token_urlsafe(32)
        session = Session(owner=owner, csrf=secrets.token_urlsafe(32))
        key = self.key_of(self.prefix, session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"owner": owner, "csrf": session.csrf,
                                    "created_at": utc_now_iso()})
            pipe.expire(key, self.ttl_seconds)
            await guarded(pipe.execute())
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, or None (unknown, ended or expired)."""
        if not session_id or len(session_id) > 100:
            return None
        raw = await guarded(self.redis.hgetall(self.key_of(self.prefix, session_id)))
        record = {as_text(k): as_text(v) for k, v in dict(raw or {}).items()}
        if not record.get("owner") or not record.get("csrf"):
            return None
        return Session(owner=record["owner"], csrf=record["csrf"])

    async def end(self, session_id: str) -> None:
        """Log out: the session is gone for every instance."""
        await guarded(self.redis.unlink(self.key_of(self.prefix, session_id)))
