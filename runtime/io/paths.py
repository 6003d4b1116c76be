"""Archive paths: the error every archive problem raises, file names safe to print, a file's sha256,
and the checks on an input or output path before anything is read or written."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rrim import files



class ArchiveError(ValueError):
    """An archive that cannot be read or written; the message names file, variable and reason."""


def file_sha256(path, block: int = 1 << 20) -> str:
    """sha256 of a regular file's bytes, read in blocks (read-only; a FIFO or folder is refused)."""
    h = hashlib.sha256()
    try:
        with files.open_regular(path) as f:
            for b in iter(lambda: f.read(block), b""):
                h.update(b)
    except OSError as e:
        raise ArchiveError(f"{path}: cannot be read ({e.strerror or e})") from None
    return h.hexdigest()


def display_name(name: str) -> str:
    """A file name as text that any encoding can write (bytes that are not UTF-8 shown as \\xNN)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_encodable(path: Path) -> None:
    """Refuse a path that is not valid UTF-8: the NetCDF library cannot open or create it."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"{display_name(str(path))}: the file name is not valid UTF-8, which the NetCDF library "
                           "cannot open or create; rename it") from None


def check_output_path(output, input_path=None, *, what: str = "output", others: dict | None = None) -> Path:
    """The path of an ``output`` (or a report, a plot: ``what``), refused (:class:`ArchiveError`) if its
    folder is missing or unwritable, if it is a folder, the input, or one of ``others`` ({label: path})."""
    out = Path(output)
    check_encodable(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ArchiveError(f"{out}: {what} folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArchiveError(f"{out}: {what} folder {parent} is not writable")
    if out.is_dir():
        raise ArchiveError(f"{out}: {what} path is a folder; give a file name")
    if input_path is not None and out.resolve() == Path(input_path).resolve():
        raise ArchiveError(f"{out}: {what} would overwrite the input; inputs are never modified")
    for label, other in (others or {}).items():
        if other is not None and out.resolve() == Path(other).resolve():
            raise ArchiveError(f"{out}: {what} would overwrite the {label} ({other}); give another path")
    return out
