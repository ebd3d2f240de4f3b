"""Event records on the wire (JSON), versioned by ``schema_version``.

Every topic carries raw bytes; these modules decode them with explicit checks so that a
malformed event becomes a dead-letter record with a clear error instead of crashing an
agent. ``Record.dumps()`` gives the JSON bytes to produce.
"""

from schemas.base import SCHEMA_VERSION, SchemaError
from schemas.deadletter import DeadLetter
from schemas.jobs import JobEvent
from schemas.submission import Submission, submission_key
from schemas.task import AddressTask
from schemas.verdict import VerdictEvent, verdict_key

__all__ = ["SCHEMA_VERSION", "SchemaError", "Submission", "AddressTask", "VerdictEvent",
           "JobEvent", "DeadLetter", "submission_key", "verdict_key"]
