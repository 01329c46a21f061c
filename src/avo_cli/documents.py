"""Reading and validating documents before anything is queued.

Every input of one ``avo submit`` call is read and checked first; only when
all pass are they written, in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from typing import BinaryIO

from avo_cli.errors import BadInput
from avo_cli.store.base import NewJob

STDIN_NAME = "<stdin>"


def _human(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def too_big(source: str, max_bytes: int, size: int | None = None) -> BadInput:
    # Streams are read only one byte past the cap, so their real size is unknown.
    what = f"is {_human(size)}" if size is not None else "is larger than the limit"
    return BadInput(
        f"{source}: document {what}, over the {_human(max_bytes)} limit "
        "(set AVO_MAX_BYTES to raise it)"
    )


def validate(data: bytes, source: str, max_bytes: int) -> NewJob:
    """Check one document's bytes; raise ``BadInput`` naming the source."""
    if len(data) > max_bytes:
        raise too_big(source, max_bytes)
    if b"\x00" in data:
        raise BadInput(f"{source}: looks binary (contains NUL bytes); avo reads text documents")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source}: not valid UTF-8 (bad byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise BadInput(f"{source}: document is empty")
    return NewJob(
        event_id=str(uuid.uuid4()),
        source=source,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
    )


def _read_stream(stream: BinaryIO, max_bytes: int) -> bytes:
    # Read one byte past the cap so an oversized input is rejected, not truncated.
    return stream.read(max_bytes + 1)


def read_path(path: str, max_bytes: int) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path}: is a directory; give the documents inside it")
    if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        raise too_big(path, max_bytes, st.st_size)
    try:
        with open(path, "rb") as fh:
            return _read_stream(fh, max_bytes)
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None


def load_documents(paths: list[str], max_bytes: int) -> list[NewJob]:
    """Read and validate every input; raise on the first bad one, writing nothing."""
    if not paths:
        raise BadInput("no documents given: pass one or more files, or - for stdin")
    if paths.count("-") > 1:
        raise BadInput("stdin (-) can be given only once")
    jobs = []
    for path in paths:
        if path == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise BadInput("stdin (-) is closed: nothing to read")
            data = _read_stream(sys.stdin.buffer, max_bytes)
            jobs.append(validate(data, STDIN_NAME, max_bytes))
        else:
            jobs.append(validate(read_path(path, max_bytes), path, max_bytes))
    return jobs
