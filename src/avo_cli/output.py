"""Terminal I/O in one place: data to stdout, people-facing text to stderr.

Untrusted text (documents, model output, error details) goes through
``clean`` before it reaches a terminal: escape sequences and other control
characters are removed; JSON output escapes them itself and stays verbatim.
"""

from __future__ import annotations

import os
import re
import sys

from avo_cli.errors import OutputError

_quiet = False

# CSI / OSC / other ESC sequences, then any remaining C0/C1 control except tab and newline.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST (e.g. OSC 52 clipboard)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]?"  # two-byte sequences, lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Make untrusted text inert for a terminal (markup is handled by the renderer)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def is_quiet() -> bool:
    return _quiet


def stdout_is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def stderr_is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def require_stdout() -> None:
    """Fail before doing anything when there is nowhere to print the result."""
    if sys.stdout is None or sys.stdout.closed:
        raise OutputError("stdout is closed: nowhere to print the result")


def data(text: str) -> None:
    """Machine-readable output: ids, JSON. Always printed, never decorated."""
    require_stdout()
    try:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader left: cli turns this into a quiet exit
    except OSError as exc:
        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None


def info(text: str) -> None:
    """A message for people, on stderr; silenced by -q."""
    if not _quiet:
        sys.stderr.write(clean(text) + "\n")
        sys.stderr.flush()


def error(text: str) -> None:
    """A one-line error on stderr; never silenced."""
    one_line = " ".join(clean(text).split())
    sys.stderr.write(f"avo: error: {one_line}\n")
    sys.stderr.flush()
