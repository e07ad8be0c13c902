"""How every `kdbench` command reports a problem the user can act on."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console

from kdbench.errors import KdbenchError

err_console = Console(stderr=True)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show a kdbench error as one actionable line (exit code 2) instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KdbenchError as exc:
            err_console.print(f"[bold red]error:[/bold red] {exc}")
            sys.exit(2)

    return wrapper
