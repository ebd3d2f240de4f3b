"""Settings of the HTTP API (``mailsift api``): they live in :mod:`mailsift.settings`.

``ApiConfig`` is :class:`~mailsift.settings.Settings` (fields ``api_tokens``,
``api_max_body``, ``api_rate``, ``api_burst``, ``webhook_secret``,
``webhook_allowed_networks``), so a wrong value gets the same one-line error::

    >>> load_api_config({"MAILSIFT_API_RATE": "fast"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mailsift.settings.SettingsError: MAILSIFT_API_RATE: expected a positive number ..., got 'fast'
    >>> c = load_api_config({"MAILSIFT_API_TOKENS": "s3cret-a, s3cret-b"})
    >>> c.api_tokens, c.api_max_body, c.api_burst
    (('s3cret-a', 's3cret-b'), 10485760, 20)
"""

from __future__ import annotations

from collections.abc import Mapping

from mailsift.settings import Settings, load_settings

__all__ = ["ApiConfig", "load_api_config"]

ApiConfig = Settings


def load_api_config(environ: Mapping[str, str] | None = None, *,
                    dotenv: bool = True) -> Settings:
    """The settings (``os.environ`` and ``.env`` by default, or ``environ``)."""
    return load_settings(environ, dotenv=dotenv)
