"""The Faust agents of mailsift, one stage each.

* :mod:`agents.intake` — ``submissions``/``replays`` → syntax verdicts, dedupe, ``by-domain``
* :mod:`agents.domain` — ``by-domain`` → DNS + polite SMTP → ``verdicts`` or ``retries.N``
* :mod:`agents.retry` — ``retries.N`` → (when due) ``by-domain``
* :mod:`agents.progress` — ``verdicts`` + ``jobs`` → job progress and ``completed`` events

Each stage is a handler over batches of raw events run by :func:`streams.stage.run_stage`.
"""
