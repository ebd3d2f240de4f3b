"""The web dashboard, served by ``mailsift api`` at ``/`` (:mod:`mailsift.api.web.pages`)."""

from mailsift.api.web.pages import add_routes

__all__ = ["add_routes"]
