"""Which failures are temporary: decided here, once, for every stage, the CLI and the API.

A temporary failure means "a service is unavailable right now" (Kafka, Redis, Postgres):
the work waits it out and is never dead-lettered. Anything else is the event's fault (it
is narrowed down to the one event and dead-lettered) or a bug.

Kafka errors follow aiokafka's ``retriable`` flag (a leader moving, a broker not ready, a
request timing out), plus the ones that mean the broker is gone (``KafkaConnectionError``,
``KafkaTimeoutError``: a produce that got no answer within its delivery timeout,
``KafkaUnavailableError``, a closed producer). A non-retriable error about the record
itself (too large, corrupt, an invalid topic) is the event's fault. Any other
non-retriable one (authorization, an unsupported version) is the configuration's: the
stage holds its events and says so in one warning line, for an operator to fix, rather
than dead-letter every one of them.

>>> from aiokafka.errors import (KafkaTimeoutError, MessageSizeTooLargeError,
...                              NotLeaderForPartitionError, TopicAuthorizationFailedError)
>>> [is_transient(e()) for e in (NotLeaderForPartitionError, KafkaTimeoutError,
...                              TopicAuthorizationFailedError, MessageSizeTooLargeError)]
[True, True, True, False]
>>> is_transient(ConnectionRefusedError()), is_transient(ValueError())
(True, False)
"""

from __future__ import annotations

__all__ = ["is_transient", "TRANSIENT_ERRORS", "EVENT_FAULTS"]


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, OSError]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                   redis.exceptions.BusyLoadingError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import asyncpg

        errors += [asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                   asyncpg.InterfaceError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


#: services unavailable right now (besides Kafka's, which :func:`is_transient` judges)
TRANSIENT_ERRORS = _transient_errors()


def _event_faults() -> tuple[type[BaseException], ...]:
    from aiokafka import errors

    return (errors.MessageSizeTooLargeError, errors.RecordTooLargeError,
            errors.CorruptRecordException, errors.InvalidTopicError)


#: Kafka errors that are the record's fault (dead-lettered, never retried)
EVENT_FAULTS = _event_faults()


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means "try again later" rather than "this event is bad"."""
    from aiokafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or not isinstance(exc, EVENT_FAULTS)
    return isinstance(exc, TRANSIENT_ERRORS)
