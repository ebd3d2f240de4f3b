"""What a log line is about, beyond its text: the stage and the job, as context variables.

:func:`streams.stage.run_stage` sets :data:`STAGE` for everything a stage runs (tasks it
starts inherit it); code handling one job sets :data:`JOB_ID`, or passes
``extra={"job_id": ...}`` to the log call. ``mailsift.logs`` puts both in JSON log lines.

>>> STAGE.get(), JOB_ID.get()
(None, None)
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["STAGE", "JOB_ID"]

STAGE: ContextVar[str | None] = ContextVar("mailsift_stage", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("mailsift_job_id", default=None)
