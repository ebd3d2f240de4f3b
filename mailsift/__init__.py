"""mailsift: event-sourced email-list verification on Faust/Kafka.

The application shell lives here (settings, CLI, local stack); the work is done by the
top-level packages ``checks`` (verification engine), ``schemas``, ``streams``, ``agents``
and ``sinks``.
"""

__version__ = "0.1.0"
