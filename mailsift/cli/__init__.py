"""The ``mailsift`` command line (typer + rich)."""
