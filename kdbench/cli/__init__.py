"""The command line: `kdbench run`, `list`, `status`, `leaderboard`, `data`, `denoise`,
`export`. Commands only parse, call the rooms that do the work, and print."""

from kdbench.cli.app import main

__all__ = ["main"]
