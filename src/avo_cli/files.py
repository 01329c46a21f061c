"""Writing a file the user named: atomically, through symlinks, never widening its mode.

``write_atomic`` is the one place avo replaces a file (``avo export -o``,
``avo config set/unset``). A reader sees the old content or the new one,
never half. What it must not do, and a plain temp-file-plus-``os.replace``
does:

- replace a symlink with a regular file (dotfiles setups link
  ``config.toml``; ``-o link.md`` must update the file the link points to);
- reset the target's mode to the umask default (a 0640 file stays 0640);
- replace something that is not a regular file: ``-o /dev/stdout``, a FIFO,
  a terminal or any other device node is written to directly, in place.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

# Paths that name a stream or a kernel object, not a file to swap: /dev/stdout
# resolves to /proc/self/fd/1 and on to whatever fd 1 is (a pipe has no path).
_SPECIAL_ROOTS = ("/dev/", "/proc/")


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_in_place(path: str, payload: bytes) -> None:
    with open(path, "wb") as fh:  # truncates a regular file; a FIFO or device just gets data
        fh.write(payload)
        fh.flush()


def write_atomic(path: str | os.PathLike[str], data: str | bytes, mode: int | None = None) -> None:
    """Replace the file at ``path`` (through symlinks) with ``data`` atomically.

    ``mode`` caps the permissions: a new file gets ``mode`` (default 0666
    minus the umask, like ``open``); an existing file keeps its own mode,
    narrowed to ``mode`` when one is given (``mode=0o600`` for a file that
    may hold a secret never widens a 0400 file nor keeps a 0644 one). If
    ``path`` exists and is not a regular file (a FIFO, a device, /dev/stdout)
    the data is written to it directly. Raises ``OSError`` on failure, with
    the old file left as it was and no temporary file behind.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    name = os.fspath(path)
    try:
        st: os.stat_result | None = os.stat(name)  # follows symlinks
    except FileNotFoundError:
        st = None  # new file, or a dangling symlink: create what it points to
    real = os.path.realpath(name)
    if st is not None and (not stat.S_ISREG(st.st_mode) or real.startswith(_SPECIAL_ROOTS)):
        _write_in_place(name, payload)
        return
    if st is None:
        new_mode = _default_mode() if mode is None else mode
    else:
        new_mode = stat.S_IMODE(st.st_mode)
        if mode is not None:
            new_mode &= mode
    target = Path(real)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            try:  # keep the owner/group when allowed (root, or a group we are in)
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                with contextlib.suppress(OSError):
                    os.chown(tmp, -1, st.st_gid)
        os.chmod(tmp, new_mode)
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
