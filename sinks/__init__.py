"""Sinks and shared tables: where workers put what they share (Redis, Postgres, AMQP)."""
