"""The dashboard's handlers: ``/`` (login form or the jobs), ``/login``, ``/logout``,
``/jobs/{job_id}`` (a job's page), ``/jobs/{job_id}/delete`` and ``/static/…``.

Same process and same tokens as the API. Logging in with a token makes a session
(:mod:`sinks.redis_sessions`); its cookie is ``HttpOnly``, ``SameSite=Strict`` and
``Secure`` unless the page was opened on a loopback address (``http://127.0.0.1``).
CSRF: every form that changes something carries the session's token, and the script
sends it as ``X-CSRF-Token`` with each API call (:mod:`mailsift.api.auth` checks it); the
login form is refused from another origin. Logins are limited per client address.

Every page is sent with a strict Content-Security-Policy (scripts and styles from this
server only), so it works without any external network access.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from aiohttp import web

from mailsift.api.access import require_job
from mailsift.api.auth import (
    PRINCIPAL,
    SESSION_COOKIE,
    TokenBucket,
    check_token,
    principal_of_token,
    session_principal,
)
from mailsift.api.errors import ApiError
from mailsift.api.handlers import jobs_of, status_of
from mailsift.api.state import STATE
from mailsift.api.web.html import dashboard_page, job_page, login_page, not_found_page
from sinks.redis_sessions import Session

__all__ = ["add_routes"]

STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: login attempts per client address: 10 at once, then one each 6 s
LOGINS = web.AppKey("mailsift_logins", TokenBucket)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html",
                        headers=SECURITY_HEADERS)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _on_loopback(request: web.Request) -> bool:
    host = (request.url.host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _session(request: web.Request) -> Session | None:
    """The request's live session (its principal set on the request), or None."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    state = request.app[STATE]
    session = await state.sessions.get(session_id)
    if session is None:
        return None
    principal = session_principal(state.settings, session.owner)
    if principal is None:
        return None
    request[PRINCIPAL] = principal
    return session


def _check_form_csrf(session: Session, form: dict[str, str]) -> None:
    if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise ApiError(403, "csrf", "this form is stale or not from this site: reload the page")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def index(request: web.Request) -> web.Response:
    """``GET /``: the jobs and the upload form, or the login form."""
    session = await _session(request)
    if session is None:
        return _html(login_page())
    jobs = await jobs_of(request, 100)
    deleted = request.query.get("deleted")
    return _html(dashboard_page(session.csrf, jobs,
                                message=f"Job {deleted[:64]} was deleted." if deleted else None))


async def login(request: web.Request) -> web.Response:
    """``POST /login``: a token from the form makes a session."""
    if not _same_origin(request):
        return _html(login_page("This login form is not from this site."), 403)
    allowed, _wait = request.app[LOGINS].take(request.remote or "?")
    if not allowed:
        return _html(login_page("Too many attempts: wait a minute and try again."), 429)
    form = await request.post()
    token = str(form.get("token", "")).strip()
    state = request.app[STATE]
    try:
        check_token(state.settings, token)
    except ApiError:
        return _html(login_page("That token is not valid here."), 401)
    session_id, _session_record = await state.sessions.create(
        principal_of_token(state.settings, token).owner)
    resp = _see_other("/")
    resp.set_cookie(SESSION_COOKIE, session_id, path="/", httponly=True, samesite="Strict",
                    secure=request.secure or not _on_loopback(request),
                    max_age=int(state.settings.api_session_hours * 3600))
    return resp


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: the session ends (for every instance)."""
    session = await _session(request)
    if session is not None:
        _check_form_csrf(session, dict(await request.post()))  # type: ignore[arg-type]
        await request.app[STATE].sessions.end(request.cookies[SESSION_COOKIE])
    resp = _see_other("/")
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def job(request: web.Request) -> web.Response:
    """``GET /jobs/{job_id}``: a job's page (its numbers now; the script keeps them live)."""
    session = await _session(request)
    if session is None:
        return _see_other("/")
    try:
        status = await status_of(request)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return _html(not_found_page(session.csrf), 404)
    return _html(job_page(session.csrf, status))


async def delete(request: web.Request) -> web.Response:
    """``POST /jobs/{job_id}/delete``: erase the job, back to the list."""
    # aiokafka is slow to import: only the handlers that talk to Kafka load it
    from mailsift.erasure import Eraser
    from streams.client import kafka_calls

    session = await _session(request)
    if session is None:
        return _see_other("/")
    _check_form_csrf(session, dict(await request.post()))  # type: ignore[arg-type]
    job_id = request.match_info["job_id"]
    try:
        await require_job(request, job_id)
    except ApiError:
        return _html(not_found_page(session.csrf), 404)
    state = request.app[STATE]
    eraser = Eraser(state.settings, store=state.jobs.store, registry=state.jobs,
                    outbox=state.outbox, sink=state.sink)
    with kafka_calls(state.settings):
        await eraser.erase(job_id)
    return _see_other(f"/?deleted={job_id}")


async def static(request: web.Request) -> web.StreamResponse:
    """``GET /static/{name}``: the script and the style sheet (nothing else)."""
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise ApiError(404, "not_found", "no such file")
    return web.Response(body=path.read_bytes(), content_type=_STATIC_TYPES[path.suffix],
                        charset="utf-8", headers={"X-Content-Type-Options": "nosniff",
                                                  "Cache-Control": "no-cache"})


async def favicon(request: web.Request) -> web.Response:
    """``GET /favicon.ico``: nothing (browsers ask for it on every page)."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def add_routes(app: web.Application) -> None:
    """The dashboard's routes on the API's application."""
    app[LOGINS] = TokenBucket(rate=1 / 6, burst=10)
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/jobs/{job_id}", job)
    app.router.add_post("/jobs/{job_id}/delete", delete)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", favicon)
