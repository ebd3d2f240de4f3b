"""The local stack of real services (Tansu, Postgres, Redis, RabbitMQ) on 127.0.0.1."""

from mailsift.stack.manager import ServiceStatus, stack_down, stack_status, stack_up
from mailsift.stack.services import StackError

__all__ = ["ServiceStatus", "StackError", "stack_down", "stack_status", "stack_up"]
