"""The README stays true: its settings table is the code's, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from mailsift.cli.main import app
from mailsift.settings import settings_table
from mailsift.vocabulary import vocabulary_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_settings_table_matches_the_code() -> None:
    assert settings_table() in README


def test_vocabulary_table_matches_the_code() -> None:
    assert vocabulary_table() in README


def test_every_mailsift_command_in_the_readme_exists() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    named = set(re.findall(r"`mailsift ([a-z]+)", README))
    assert named, "the README names no command"
    assert named <= commands, named - commands


def test_the_two_commands_are_there() -> None:
    assert "./scripts/demo" in README and "./scripts/test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
