"""How every `kdbench` command reports a problem the user can act on, and the exit status
scripts can rely on."""

from __future__ import annotations

import errno
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from kdbench.errors import KdbenchError

EXIT_TRIALS_FAILED = 1
"""`kdbench run` finished, but some trials of the grid failed (now or in an earlier run)."""

EXIT_USAGE = 2
"""The command could not do what was asked: a bad option, key, value or file, a missing or
damaged store, a plugin that fails to load, a full disk, a folder it may not write. Click's
own usage errors exit with 2 as well."""

EXIT_STATUS_HELP = (
    "\b\n"
    "Exit status:\n"
    "  0  done: every trial of the grid done or not applicable\n"
    f"  {EXIT_TRIALS_FAILED}  some trials of the grid failed (`kdbench status` says why)\n"
    f"  {EXIT_USAGE}  usage error: a bad option, setting or file, a missing or damaged\n"
    "     store, a plugin that fails to load, a full disk, a folder it may not write"
)

err_console = Console(stderr=True)


def printable(text: str) -> str:
    """`text` with every character a terminal would act on (newlines, escapes) written as
    its escape sequence: a message may quote user input."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def report_error(exc: KdbenchError) -> None:
    """One line on stderr: no wrapping, no markup (a message may quote user input holding
    brackets), no control characters."""
    line = Text.assemble(("error:", "bold red"), " ", printable(str(exc)))
    err_console.print(line, soft_wrap=True)


class ReportingGroup(click.Group):
    """A command group that turns a `KdbenchError` raised anywhere below it — a command,
    loading the plugins, opening a store, a subgroup — into `report_error` and exit status
    2, so no command can forget to and none shows a traceback for it. A full disk is
    reported the same way (every write is atomic, so nothing half-written was kept), and so
    is a file or folder this user may not write (a shared cache, a read-only medium)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KdbenchError as exc:
            report_error(exc)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                report_error(KdbenchError(
                    f"{exc.filename or 'a write'}: {exc.strerror}; nothing half-written was "
                    "kept, free some space and run the command again"
                ))
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                report_error(KdbenchError(
                    f"{exc.filename or 'a file'}: {exc.strerror}; kdbench writes its cache under "
                    "$KDBENCH_CACHE and a run's results beside its store (--results): point "
                    "them at folders this user may write"
                ))
            else:
                raise
        ctx.exit(EXIT_USAGE)
