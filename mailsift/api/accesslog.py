"""The API's access log: one line per request, its path without the query string.

aiohttp's own format has only ``%r``, the whole request line, and a client that puts its
token in ``?token=`` (refused: the API reads only the ``Authorization`` header) would have
it written to the log. The path is all an operator needs.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from mailsift.logs import strip_query

__all__ = ["AccessLogger"]


class AccessLogger(AbstractAccessLogger):
    """``127.0.0.1 "GET /v1/jobs/abc" 200 512 0.004s``."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %s %.3fs', request.remote, request.method,
                         # decoded: an address sent as %40 is masked like any other
                         strip_query(request.rel_url.path), response.status,
                         response.body_length, time)
