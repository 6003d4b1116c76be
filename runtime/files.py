"""Files the runtime reads and writes: regular files only (never a FIFO or a device), bounded reads,
durable atomic replacement, and the temporaries a killed writer leaves.

A temporary for ``TARGET`` is ``.TARGET.rrim-PID-HOST-XXXXXXXX.rrim-tmp`` in the target's folder
(PID: the writer's process id, HOST: 8 hex digits of its host name), so that a later writer can
tell a dead writer's leftovers from a live one's, and one target's temporaries from another's.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path

TMP_SUFFIX = ".rrim-tmp"
#: A temporary older than this is stale whoever wrote it (another host, or a reused pid).
STALE_SECONDS = 6 * 3600
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]
#: What follows ``.TARGET.`` in a temporary's name: this rrim's form, or the older ``XXXXXXXX`` form.
_TMP_TAIL = re.compile(r"(?:rrim-(\d+)-([0-9a-f]{8})-)?[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))


class NotRegularFile(OSError):
    """A path that is a folder, a FIFO, a socket or a device where a regular file is needed."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def file_kind(path) -> str | None:
    """None for a regular file (links followed); else what it is ('a FIFO', 'a dangling link', …)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling link" if os.path.islink(path) else "missing"
    return None if stat.S_ISREG(mode) else _kind(mode)


def open_regular(path):
    """A binary file object for ``path``, refused (:class:`NotRegularFile`) unless it is a regular file.
    Opened without blocking, so a FIFO never hangs the caller."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, f"{_kind(mode)}, not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, limit: int) -> bytes:
    """The bytes of regular file ``path``; :class:`NotRegularFile` for anything else, ``ValueError``
    when it holds more than ``limit`` bytes (nothing beyond the limit is read)."""
    with open_regular(path) as f:
        data = f.read(limit + 1) if os.fstat(f.fileno()).st_size <= limit else None  # None: too large already
    if data is None or len(data) > limit:
        raise ValueError(f"{path}: larger than {limit} bytes; refusing to read it")
    return data


def identity(path) -> tuple:
    """(device, inode, size, mtime, ctime) of ``path``: differs once the file is replaced or written."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fsync_folder(folder) -> None:
    """Make a rename in ``folder`` durable (where the system allows folders to be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename is still atomic
        pass
    finally:
        os.close(fd)


def replace_durably(tmp, target) -> None:
    """fsync ``tmp``, rename it over ``target``, fsync the folder: after a power loss the target is
    the old file or the whole new one, never an empty or partial one."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_folder(Path(target).parent)


def make_temporary(target) -> Path:
    """Create an empty temporary for ``target`` beside it (see the module docstring), with the mode a
    new file gets here: 0o644 less the umask, applied by the system (the umask is never changed)."""
    target = Path(target)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.rrim-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            os.close(os.open(tmp, flags, 0o644))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(target.parent))


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def stale_temporaries(target, *, all_writers: bool) -> list[Path]:
    """Temporaries left for ``target`` (names matched exactly: glob characters in them are literal).
    ``all_writers``: every one (the caller holds the folder's lock); else only those of dead
    processes on this host and those older than :data:`STALE_SECONDS`."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    head = f".{target.name}."
    found = []
    for p in target.parent.glob(glob.escape(head) + "*" + TMP_SUFFIX):
        m = _TMP_TAIL.fullmatch(p.name[len(head):])
        if m is None:
            continue  # another target's temporary whose name starts like this one's
        if not all_writers:
            try:
                old = time.time() - p.lstat().st_mtime > STALE_SECONDS
            except OSError:
                continue
            if not (old or (m.group(1) and m.group(2) == _HOST and _dead(int(m.group(1))))):
                continue
        found.append(p)
    return sorted(found)


def remove_stale_temporaries(target, *, all_writers: bool = True) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``target``; returns them."""
    stale = stale_temporaries(target, all_writers=all_writers)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part
    (durably: see :func:`replace_durably`); the temporary is removed if anything fails (the error is raised)."""
    path = Path(path)
    remove_stale_temporaries(path, all_writers=False)
    tmp = make_temporary(path)
    try:
        tmp.write_text(text)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
