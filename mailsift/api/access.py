"""Who may see which job, and how much a token may submit.

* A job submitted through the API belongs to the token that submitted it. Its *owner* is
  kept as a fingerprint of the token (:func:`token_owner`, never the token itself): in
  the API's Redis record, in the job's ``created`` event and in Postgres (``jobs.owner``),
  so a job stays its token's after Redis or Postgres was rebuilt.
* A token sees, lists, reads and deletes only its own jobs. Another token's job, or one
  submitted by the CLI or an upstream producer (no owner), is answered 404, the same as a
  job that does not exist, so a token cannot even learn which job ids exist.
* Admin tokens (``MAILSIFT_API_ADMIN_TOKENS``) see every job and manage the suppression
  list.
* Quotas: at most ``MAILSIFT_API_JOB_MAX_ADDRESSES`` addresses in one job (413), and
  ``MAILSIFT_API_DAILY_ADDRESSES`` per token per UTC day (429 with ``Retry-After`` until
  the day ends), counted in Redis (:class:`sinks.redis_daily.DailyAllowance`) so every
  API instance agrees. Admin tokens have no daily quota.

>>> token_owner("s3cret")
'tok_1ec1c26b50d5d3c58d958318'
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from mailsift.api.auth import PRINCIPAL, is_admin, token_owner
from mailsift.api.errors import ApiError
from mailsift.api.state import STATE

__all__ = ["token_owner", "is_admin", "owner_of_request", "require_job", "require_admin",
           "daily_quota", "take_quota", "Refund"]


def owner_of_request(request: web.Request) -> str:
    """The owner fingerprint of the request's token."""
    return request[PRINCIPAL].owner


def request_is_admin(request: web.Request) -> bool:
    return request[PRINCIPAL].admin


def not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no job {job_id!r}")


async def require_job(request: web.Request, job_id: str) -> None:
    """404 unless the request's token may see ``job_id`` (its owner, or an admin token).
    Whether the job exists at all is the caller's to check."""
    if request_is_admin(request):
        return
    state = request.app[STATE]
    owner = (await state.jobs.get(job_id)).get("owner") or await state.sink.job_owner(job_id)
    if owner is None or not hmac.compare_digest(owner, owner_of_request(request)):
        raise not_found(job_id)


def require_admin(request: web.Request) -> None:
    """403 unless the request's token is an admin token."""
    if not request_is_admin(request):
        raise ApiError(403, "forbidden", "this needs an admin token (MAILSIFT_API_ADMIN_TOKENS)")


Refund = Callable[[int], Awaitable[None]]


async def _nothing(addresses: int) -> None:
    return None


async def take_quota(request: web.Request, addresses: int) -> Refund:
    """Take ``addresses`` of the token's daily quota; returns what gives part of it back
    (what was not submitted after all). 413 for a job over the per-job limit, 429 over
    the day's quota."""
    state = request.app[STATE]
    settings = state.settings
    if addresses > settings.api_job_max_addresses:
        raise ApiError(413, "job_too_large",
                       f"{addresses} addresses in one job; at most "
                       f"{settings.api_job_max_addresses} (MAILSIFT_API_JOB_MAX_ADDRESSES)")
    limit = settings.api_daily_addresses
    if limit == 0 or request_is_admin(request):
        return _nothing
    name = f"api:{owner_of_request(request)}"
    taken = await state.allowance.take(name, addresses, limit)
    if not taken.granted:
        left = max(0, limit - taken.used)
        raise ApiError(429, "quota_exceeded",
                       f"{addresses} addresses would pass this token's daily quota of {limit} "
                       f"({left} left today; MAILSIFT_API_DAILY_ADDRESSES); it renews at "
                       "midnight UTC",
                       headers={"Retry-After": str(max(1, taken.resets_in))})

    async def refund(unused: int) -> None:
        if unused > 0:
            await state.allowance.give_back(name, unused)
    return refund


@asynccontextmanager
async def daily_quota(request: web.Request, addresses: int) -> AsyncIterator[None]:
    """:func:`take_quota` for the block; all given back when the block fails (nothing
    was submitted)."""
    refund = await take_quota(request, addresses)
    try:
        yield
    except BaseException:
        await refund(addresses)
        raise
