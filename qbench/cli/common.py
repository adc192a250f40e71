"""What every command shares: rich output and the check of a folder qbench will write into."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from qbench.config import ConfigError


def escape(text: str) -> str:
    """A name or path inside rich markup: its '[' is text, not a tag."""
    from rich.markup import escape as rich_escape
    return rich_escape(text)


def _console():
    from rich.console import Console
    console = Console()
    console.soft_wrap = not console.is_terminal   # in a pipe or a log, a long line stays one line
    return console


def _check_output_dir(path: Path, what: str) -> None:
    """A folder qbench will write into: refused, before anything is written, when it (or a folder above it) is a
    file, or when it cannot be created or written. The permission bits are not the whole answer (under /proc or /sys
    they say yes and the kernel says no, and root passes them all), so a file is written there for real and
    removed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} '{path}' is a file, not a folder; give a folder (it is created if missing)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} '{path}' cannot be created: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{path}' cannot be written: no write permission on '{existing}'")
    _probe_folder(path, existing, what)


def _probe_folder(path: Path, existing: Path, what: str) -> None:
    """Write and remove a file in the folder, or where a missing one would be made (its nearest existing
    ancestor): a file and never a folder, so that nothing appears that another process walking the tree could
    catch half-gone, and nothing is left behind."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".qbench-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} '{path}' cannot be written: {reason} (making a file in '{existing}')") from None
