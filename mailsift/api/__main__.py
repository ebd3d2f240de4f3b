"""``python -m mailsift.api [--host H] [--port P]``: the same as ``mailsift api``."""

from __future__ import annotations

from mailsift.cli.api_cmd import main

if __name__ == "__main__":  # pragma: no cover
    main()
