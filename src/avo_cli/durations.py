"""Human durations for operator commands: ``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""

from __future__ import annotations

import re

from avo_cli.errors import AvoError, ExitCode

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    match = _PATTERN.match(text.lower())
    if not match:
        raise AvoError(
            f"invalid duration {text!r}: use e.g. 90s, 15m, 12h, 30d, 2w", ExitCode.USAGE
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
