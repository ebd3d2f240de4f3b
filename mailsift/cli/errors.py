"""Turn expected failures into one clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from rich.console import Console

from agents.outage import is_transient
from mailsift.inputs import InputError
from mailsift.settings import SettingsError
from mailsift.stack.services import StackError
from streams.worker import KafkaUnavailable, WorkerStartError

T = TypeVar("T")
stderr = Console(stderr=True, highlight=False)

#: errors that are the user's to fix: printed as one line, exit code 2
USER_ERRORS: tuple[type[BaseException], ...] = (SettingsError, StackError, KafkaUnavailable,
                                                 WorkerStartError, InputError)


def fail(message: str, code: int = 2) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def run_guarded(fn: Callable[[], T]) -> T:
    """Call ``fn``; a known error becomes one line on stderr (no traceback)."""
    try:
        return fn()
    except USER_ERRORS as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # a service that did not answer, whichever it was
        fail(f"a service did not answer ({type(exc).__name__}: {exc}); is the stack "
             "running? (`mailsift stack status`)")
