"""One exception hierarchy; every error a user can cause maps to one exit code.

The CLI turns an ``AvoError`` into a one-line message on stderr and its
``exit_code`` at a single boundary (``cli.main``). Set ``AVO_RAISE_ERRORS=1``
to get the traceback instead, for debugging.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in README.md and ``avo --help``."""

    OK = 0
    JOB_FAILED = 1  # a job ended failed/cancelled (status --wait, run)
    USAGE = 2  # bad flags or arguments (click's own code)
    BAD_INPUT = 3  # a document that cannot be queued: missing, empty, binary, too big...
    NOT_FOUND = 4  # unknown or ambiguous job id
    WRONG_STATE = 5  # retry/cancel of a job in a state that does not allow it
    DATABASE = 6  # database unreadable, corrupt, unwritable, full or from a newer avo
    TIMEOUT = 7  # --wait ran out of time
    ENGINE = 8  # engine misconfigured (unknown engine, missing key, bad base URL)
    BACKEND = 9  # database backend unavailable (driver missing, server unreachable)
    CONFIG = 10  # bad configuration value or config file
    OUTPUT = 11  # cannot write output: stdout closed or full, -o path unwritable
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM


EXIT_CODE_HELP = {
    ExitCode.OK: "success",
    ExitCode.JOB_FAILED: "a job failed or was cancelled",
    ExitCode.USAGE: "bad command-line usage",
    ExitCode.BAD_INPUT: "bad input document (missing, empty, binary, not UTF-8, too big)",
    ExitCode.NOT_FOUND: "unknown or ambiguous job id",
    ExitCode.WRONG_STATE: "job is in a state that does not allow the operation",
    ExitCode.DATABASE: "database unreadable, corrupt, read-only, full, or newer than avo",
    ExitCode.TIMEOUT: "timed out waiting for a job",
    ExitCode.ENGINE: "engine misconfigured (unknown engine, missing API key)",
    ExitCode.BACKEND: "backend unavailable (PostgreSQL driver or server, the serve extra)",
    ExitCode.CONFIG: "invalid configuration value",
    ExitCode.OUTPUT: "cannot write output (stdout closed or full, -o path unwritable)",
    ExitCode.INTERRUPTED: "interrupted (SIGINT)",
    ExitCode.TERMINATED: "terminated (SIGTERM)",
}


class AvoError(Exception):
    """Base for errors shown to the user as one line; never a traceback."""

    exit_code: ExitCode = ExitCode.JOB_FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class BadInput(AvoError):
    exit_code = ExitCode.BAD_INPUT


class NotFound(AvoError):
    exit_code = ExitCode.NOT_FOUND


class WrongState(AvoError):
    exit_code = ExitCode.WRONG_STATE


class DatabaseError(AvoError):
    exit_code = ExitCode.DATABASE


class BackendUnavailable(AvoError):
    exit_code = ExitCode.BACKEND


class EngineError(AvoError):
    """The engine cannot run at all (configuration); not a per-job failure."""

    exit_code = ExitCode.ENGINE


class ConfigError(AvoError):
    exit_code = ExitCode.CONFIG


class OutputError(AvoError):
    exit_code = ExitCode.OUTPUT


class WaitTimeout(AvoError):
    exit_code = ExitCode.TIMEOUT


# --- per-job failures raised by engines; the worker records them on the job ---


class JobError(Exception):
    """A job-level failure. ``transient`` decides between retry and fail."""

    transient = False
    #: Tokens the chain had spent on this job when it failed (set by ``chain.run_chain``).
    usage: dict[str, Any] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class TransientJobError(JobError):
    """Worth trying again later (rate limit, 5xx, timeout, connection)."""

    transient = True


class PermanentJobError(JobError):
    """Trying again would give the same answer (bad request, auth, refusal)."""
