"""The Faust application, its topics and the stage plumbing (ack window, dead letters).

``streams.topology.build_app(settings)`` wires the agents of ``agents/`` onto the topics:

    submissions ─▶ intake ─▶ by-domain ─▶ domain ─▶ verdicts ─▶ progress ─▶ jobs
        (upstream)   │  ▲        │   ▲                 │
                     │  └ replays│   └── retry ◀── retries.N (delayed)
                     └──────────────────────────▶ dead-letters (malformed events)
"""
