"""The command line: the only package that imports typer, click or rich, prints or exits."""

from toolkit.cli.app import app, main

__all__ = ["app", "main"]
