"""The ``avo`` command line: thin typer commands over the library core.

Each command parses its options, calls one core function, renders, and lets
``AvoError`` reach ``main``, which turns it into a one-line message and an
exit code. Heavy modules (openai, rich, sqlite-utils) are imported inside the
commands that need them, so ``avo submit`` and ``avo status`` start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer import _click
from typer.core import TyperGroup

from avo_cli import __version__
from avo_cli.errors import EXIT_CODE_HELP, AvoError, ExitCode, OutputError

if TYPE_CHECKING:
    from avo_cli.config import Settings
    from avo_cli.engines.base import Engine


def _quiet_callback(ctx: _click.Context, param: _click.Parameter, value: bool) -> None:
    if value:
        from avo_cli import output

        output.set_quiet(True)


def _add_quiet_option(cmd: _click.Command, root_quiet: _click.Parameter) -> None:
    """``-q`` after the command name too (``avo work -q``), not only ``avo -q work``.

    A copy of the root ``--quiet`` option that sets the flag itself instead of
    reaching the command function.
    """
    import copy

    if isinstance(cmd, TyperGroup):
        for sub in cmd.commands.values():
            _add_quiet_option(sub, root_quiet)
        return
    if any(p.name == "quiet" for p in cmd.params):
        return
    option = copy.copy(root_quiet)
    option.expose_value = False
    option.callback = _quiet_callback
    cmd.params.append(option)


class AvoGroup(TyperGroup):
    """Turns ``AvoError`` into a one-line message and its exit code.

    Doing it here rather than only in ``main`` means typer's test runner and
    the real process take the same path. ``AVO_RAISE_ERRORS=1`` re-raises.
    """

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        # Strings and missing options need no pydantic (see fastparams): ~100 ms saved.
        from avo_cli import fastparams

        commands = [self, *self.commands.values()]
        fastparams.install([p for c in commands for p in c.get_params(ctx)])
        return super().parse_args(ctx, args)

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        root_quiet = next((p for p in self.params if p.name == "quiet"), None)
        if root_quiet is not None:
            for cmd in self.commands.values():
                _add_quiet_option(cmd, root_quiet)

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, **kwargs: Any
    ) -> Any:
        """Usage errors as one line too: ``avo: error: … (see 'avo status --help')``."""
        if not kwargs.get("standalone_mode", True):
            return super().main(args, prog_name, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(args, prog_name, **kwargs)
        except _click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # bare `avo` or `avo config`: the help itself is the answer
            sys.exit(exc.exit_code)
        except _click.ClickException as exc:
            from avo_cli import output

            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            output.error(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            from avo_cli import output

            output.error("aborted")
            sys.exit(int(ExitCode.JOB_FAILED))
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: _click.Context) -> object:
        from avo_cli import output

        try:
            return super().invoke(ctx)
        except AvoError as exc:
            if os.environ.get("AVO_RAISE_ERRORS"):
                raise
            output.error(exc.message)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            # Caught here, before typer's own handler turns it into a silent exit.
            output.error("interrupted")
            ctx.exit(int(ExitCode.INTERRUPTED))
        except BrokenPipeError:
            # The reader (head, a closed pipe) went away after taking what it wanted.
            _silence_stdout()
            ctx.exit(int(ExitCode.OK))


# "\b" keeps click from rewrapping the paragraph that follows: one code per line.
EXIT_CODES_EPILOG = "\b\nExit codes:\n" + "\n".join(
    f"  {int(code):>3}  {text}" for code, text in EXIT_CODE_HELP.items()
)

app = typer.Typer(
    name="avo",
    cls=AvoGroup,
    help=(
        "Turn software-development guidelines into a summary and a checklist, "
        "through a local job queue.\n\n"
        "Example: avo submit CONTRIBUTING.md && avo work && avo list"
    ),
    epilog=EXIT_CODES_EPILOG,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database path or URL [env AVO_DB; default: user data dir]", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the default when piped)")]


def _version(value: bool) -> None:
    if value:
        from avo_cli import output

        output.data(f"avo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit"
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Silence messages on stderr")
    ] = False,
) -> None:
    from avo_cli import output

    output.set_quiet(quiet)


@app.command(epilog="Example: avo submit docs/CONTRIBUTING.md SECURITY.md")
def submit(
    files: Annotated[
        list[str], typer.Argument(help="Documents to queue; - reads stdin", show_default=False)
    ],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Queue one job per document and print their event ids, one per line."""
    from avo_cli import config, output
    from avo_cli.documents import load_documents
    from avo_cli.store import open_store

    output.require_stdout()  # ids nobody can read would leave orphan jobs
    max_bytes = _max_bytes()
    jobs = load_documents(files, max_bytes)
    store = open_store(config.db_location(db))
    store.enqueue(jobs)
    if json_out:
        from avo_cli.jobview import dump_json

        text = dump_json([{"event_id": j.event_id, "source": j.source} for j in jobs])
    else:
        text = "\n".join(j.event_id for j in jobs)
    try:
        output.data(text)
    except OutputError as exc:
        raise OutputError(f"{len(jobs)} job(s) queued, but {exc.message}") from None


def _max_bytes() -> int:
    from avo_cli import config

    raw = os.environ.get("AVO_MAX_BYTES")
    if raw:
        return int(config.coerce("max_bytes", raw))
    if config.config_path().exists():
        return config.load_settings().max_bytes
    return config.DEFAULT_MAX_BYTES


# Engine options, shared by ``work`` and ``run`` (one definition; ``_engine_settings``
# resolves them).
EngineOpt = Annotated[
    str | None, typer.Option(help="auto, local or openai [env AVO_ENGINE]", show_default=False)
]
ModelOpt = Annotated[
    str | None, typer.Option(help="Model name [env AVO_MODEL; gpt-4o-mini]", show_default=False)
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible server URL [env OPENAI_BASE_URL]", show_default=False),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="What runs at once in this worker: jobs with the local engine; with openai, "
        "model requests (chunk calls included), a quarter more jobs held waiting for them "
        "[env AVO_CONCURRENCY]",
        show_default=False,
    ),
]
LeaseOpt = Annotated[
    float | None,
    typer.Option(
        min=0.1,
        help="Seconds a claim lives without a heartbeat [env AVO_LEASE; 60]",
        show_default=False,
    ),
]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Tries per job [env AVO_MAX_ATTEMPTS; 3]", show_default=False),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        min=0.1, help="Seconds per model request [env AVO_TIMEOUT; 60]", show_default=False
    ),
]
LangOpt = Annotated[
    str | None,
    typer.Option(
        help="Language of results (default: the document's) [env AVO_OUTPUT_LANG]",
        show_default=False,
    ),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Call the model even for a document already answered")
]


def _engine_settings(db: str | None, **engine_flags: Any) -> Settings:
    """Settings from the engine options of ``work``/``run`` (flags > env > file > defaults)."""
    from avo_cli.config import load_settings

    no_cache = engine_flags.pop("no_cache", False)
    return load_settings(db=db, cache=False if no_cache else None, **engine_flags)


@app.command(epilog="Example: avo work --engine local --max-jobs 10")
def work(
    engine: EngineOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    lease: LeaseOpt = None,
    max_jobs: Annotated[
        int | None, typer.Option(min=1, help="Stop after N jobs", show_default=False)
    ] = None,
    forever: Annotated[bool, typer.Option(help="Keep polling when the queue is empty")] = False,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds to let in-flight jobs finish after SIGINT/SIGTERM")
    ] = 30.0,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    lang: LangOpt = None,
    no_cache: NoCacheOpt = False,
    db: DbOption = None,
) -> None:
    """Drain the queue: summarise each document, then turn it into a checklist.

    Exits 0 when nothing is pending or processing, unless --forever.
    """
    settings = _engine_settings(
        db,
        engine=engine,
        model=model,
        base_url=base_url,
        concurrency=concurrency,
        lease=lease,
        max_attempts=max_attempts,
        timeout=timeout,
        lang=lang,
        no_cache=no_cache,
    )
    code = _drain(settings, max_jobs=max_jobs, forever=forever, grace=grace)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _drain(
    settings: Settings,
    *,
    max_jobs: int | None = None,
    forever: bool = False,
    grace: float = 30.0,
    stop_when: Callable[[], bool] | None = None,
    engine: Engine | None = None,
    only: list[str] | None = None,
) -> ExitCode:
    """Run one worker over the configured store until the queue is drained."""
    from avo_cli.engines import load_engine
    from avo_cli.progress import make_reporter
    from avo_cli.store import open_store
    from avo_cli.worker import Worker, WorkerOptions

    eng = engine or load_engine(settings)
    store = open_store(settings.db)
    options = WorkerOptions(
        concurrency=settings.concurrency or eng.max_concurrency or 4,
        lease=settings.lease,
        max_jobs=max_jobs,
        forever=forever,
        grace=grace,
        max_attempts=settings.max_attempts,
        cache=settings.cache,
        stop_when=stop_when,
        only=only,
    )
    try:
        return Worker(store, eng, options, make_reporter()).run()
    finally:
        store.close()


@app.command(epilog="Example: avo run CONTRIBUTING.md | jq -c .result.checklist")
def run(
    files: Annotated[
        list[str], typer.Argument(help="Documents to process; - reads stdin", show_default=False)
    ],
    engine: EngineOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    lease: LeaseOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    lang: LangOpt = None,
    no_cache: NoCacheOpt = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON Lines (the default when piped)")
    ] = False,
    db: DbOption = None,
) -> None:
    """Submit, work and print the results in one step: the command for a CI step.

    Piped (or with --json) it prints one job per line, each exactly the object
    `avo status --json` prints, compacted (JSON Lines); on a terminal, the
    rendered jobs. Waits for its own jobs only. Exits 1 if any of them failed.
    """
    from avo_cli import output
    from avo_cli.documents import load_documents
    from avo_cli.engines import load_engine
    from avo_cli.jobview import dump_json_line, job_json
    from avo_cli.store import open_store
    from avo_cli.store.base import TERMINAL

    settings = _engine_settings(
        db,
        engine=engine,
        model=model,
        base_url=base_url,
        concurrency=concurrency,
        lease=lease,
        max_attempts=max_attempts,
        timeout=timeout,
        lang=lang,
        no_cache=no_cache,
    )
    jobs = load_documents(files, settings.max_bytes)
    eng = load_engine(settings)  # a misconfigured engine fails before anything is queued
    store = open_store(settings.db)
    try:
        store.enqueue(jobs)
        waiting = [j.event_id for j in jobs]

        def ours_done() -> bool:
            while waiting and store.get(waiting[0]).status in TERMINAL:
                waiting.pop(0)
            return not waiting

        code = _drain(settings, stop_when=ours_done, engine=eng, only=list(waiting))
        rows = [store.get(j.event_id) for j in jobs]
    finally:
        store.close()
    if json_out or not output.stdout_is_tty():
        for row in rows:
            output.data(dump_json_line(job_json(row)))
    else:
        from avo_cli.render import render_status

        for row in rows:
            render_status(row)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
    failed = [r for r in rows if r.status != "completed"]
    if failed:
        output.info(f"{len(failed)} of {len(rows)} job(s) did not complete")
        raise typer.Exit(int(ExitCode.JOB_FAILED))


@app.command(epilog="Example: avo status 3f2a --wait --timeout 120 | jq .result.checklist")
def status(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Event id or a unique prefix")],
    json_out: JsonOption = False,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the job ends")] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Like avo watch: redraw live (JSON Lines when piped)"),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0, help="With --wait/--follow: give up after S seconds", show_default=False
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Add attempts, tokens and cost")
    ] = False,
    db: DbOption = None,
) -> None:
    """Print a job in the AVO API's JSON schema (rendered on a terminal)."""
    from avo_cli import config, output
    from avo_cli.jobview import dump_json, job_json
    from avo_cli.store import open_store

    if follow:
        _follow(job_id, timeout, json_out, verbose, db)
        return
    store = open_store(config.db_location(db), create=False)
    row = store.get(job_id)
    if wait:
        from avo_cli.waiting import wait_for

        row = wait_for(store, row.event_id, timeout)
    if json_out or not output.stdout_is_tty():
        obj = job_json(row)
        if verbose:
            from avo_cli.jobview import verbose_details

            obj = {**obj, "details": verbose_details(row)}
        output.data(dump_json(obj))
    else:
        from avo_cli.render import render_status

        render_status(row, verbose=verbose)
    store.close()
    if wait and row.status != "completed":
        raise typer.Exit(int(ExitCode.JOB_FAILED))


def _follow(
    job_id: str, timeout: float | None, json_out: bool, verbose: bool, db: str | None
) -> None:
    """``watch``/``status --follow``: live view on a terminal, one JSON line per change piped."""
    from avo_cli import config, output
    from avo_cli.jobview import dump_json_line, job_json
    from avo_cli.store import open_store
    from avo_cli.store.base import JobRow
    from avo_cli.waiting import wait_for

    store = open_store(config.db_location(db), create=False)
    try:
        event_id = store.get(job_id).event_id
        if json_out or not output.stdout_is_tty():
            last: list[tuple[str, str | None]] = []

            def emit(row: JobRow) -> None:
                key = (row.status, row.error)
                if not last or last[0] != key:
                    last[:] = [key]
                    output.data(dump_json_line(job_json(row)))

            row = wait_for(store, event_id, timeout, emit)
        else:
            from avo_cli.render import watch as live_watch

            row = live_watch(lambda cb: wait_for(store, event_id, timeout, cb), verbose)
    finally:
        store.close()
    if row.status != "completed":
        raise typer.Exit(int(ExitCode.JOB_FAILED))


@app.command(epilog="Example: avo watch 3f2a   (exits 0 when completed, 1 when failed)")
def watch(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Event id or a unique prefix")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per change (the default when piped)")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after S seconds", show_default=False)
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Add attempts, tokens and cost")
    ] = False,
    db: DbOption = None,
) -> None:
    """Follow a job live until it ends (same as avo status --follow)."""
    _follow(job_id, timeout, json_out, verbose, db)


@app.command("list", epilog="Example: avo list --status failed --json | jq -r '.[].event_id'")
def list_jobs(
    status_filter: Annotated[
        str | None, typer.Option("--status", help="Only jobs of this status", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many jobs")] = 20,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show recent jobs, newest first."""
    from avo_cli import config, output
    from avo_cli.jobview import dump_json, list_json
    from avo_cli.store import open_store
    from avo_cli.store.base import STATUSES

    if status_filter is not None and status_filter not in STATUSES:
        raise AvoError(
            f"unknown status {status_filter!r}: use one of {', '.join(STATUSES)}", ExitCode.USAGE
        )
    try:
        store = open_store(config.db_location(db), create=False)
    except AvoError as exc:
        if exc.exit_code != ExitCode.NOT_FOUND:
            raise
        rows = []
    else:
        rows = store.recent(status_filter, limit)
        store.close()
    if json_out or not output.stdout_is_tty():
        output.data(dump_json([list_json(r) for r in rows]))
    else:
        from avo_cli.render import render_list

        render_list(rows)


@app.command(epilog="Example: avo retry 3f2a 9bc1")
def retry(
    job_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Failed or cancelled jobs")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Queue failed or cancelled jobs again (a saved stage-1 summary is kept)."""
    from avo_cli import config, output
    from avo_cli.jobview import dump_json
    from avo_cli.store import open_store

    store = open_store(config.db_location(db), create=False)
    ids = store.retry(job_ids)
    if json_out:
        output.data(dump_json([{"event_id": e, "status": "pending"} for e in ids]))
    else:
        output.data("\n".join(ids))


@app.command(epilog="Example: avo cancel 3f2a")
def cancel(
    job_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Pending or running jobs")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Cancel jobs: pending ones at once, running ones at their next heartbeat."""
    from avo_cli import config, output
    from avo_cli.jobview import dump_json
    from avo_cli.store import open_store

    store = open_store(config.db_location(db), create=False)
    done = store.cancel(job_ids)
    if json_out:
        output.data(dump_json([{"event_id": e, "status": s} for e, s in done]))
    else:
        output.data("\n".join(f"{e}\t{s}" for e, s in done))


@app.command(epilog="Example: avo purge --older-than 30d --status completed")
def purge(
    older_than: Annotated[
        str, typer.Option(help="Age such as 90s, 15m, 12h, 30d, 2w", show_default=False)
    ],
    status_filter: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Statuses to purge (repeatable) [completed, failed, cancelled]",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Delete finished jobs older than a given age."""
    from avo_cli import config, output
    from avo_cli.durations import parse_duration
    from avo_cli.jobview import dump_json
    from avo_cli.store import open_store
    from avo_cli.store.base import TERMINAL

    seconds = parse_duration(older_than)
    statuses = status_filter or sorted(TERMINAL)
    bad = [s for s in statuses if s not in TERMINAL]
    if bad:
        raise AvoError(
            f"cannot purge {', '.join(bad)} jobs: only completed, failed, cancelled", ExitCode.USAGE
        )
    store = open_store(config.db_location(db), create=False)
    n = store.purge(seconds, statuses)
    if json_out:
        output.data(dump_json({"purged": n}))
    else:
        output.data(str(n))


@app.command(epilog="Example: AVO_API_TOKEN=s3cret avo serve --port 8000 --workers 2")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one)")] = 8000,
    workers: Annotated[
        int, typer.Option(min=0, help="In-process workers (0: run avo work separately)")
    ] = 0,
    engine: Annotated[
        str | None,
        typer.Option(help="Engine of in-process workers [env AVO_ENGINE]", show_default=False),
    ] = None,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds in-process jobs get to finish on shutdown")
    ] = 30.0,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log each request on stderr")
    ] = True,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Let browser apps from this origin call the API (repeatable; * for any)",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve the AVO HTTP API (POST /api/jobs, GET /api/jobs/ID) over the queue.

    Set AVO_API_TOKEN to require 'Authorization: Bearer TOKEN' (all but /healthz).
    """
    from avo_cli.config import load_settings
    from avo_cli.errors import BackendUnavailable

    try:
        from avo_cli import serve as http_api
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("starlette", "uvicorn"):
            raise
        raise BackendUnavailable(
            f"avo serve needs {exc.name.split('.')[0] if exc.name else 'starlette'}: "
            "pip install 'avo-cli[serve]'"
        ) from None
    settings = load_settings(db=db, engine=engine)
    http_api.serve(
        settings,
        host=host,
        port=port,
        workers=workers,
        max_bytes=_max_bytes(),
        grace=grace,
        access_log=access_log,
        cors_origins=cors_origin or [],
    )


@app.command(epilog="Example: avo export 3f2a -o .github/PULL_REQUEST_TEMPLATE/guidelines.md")
def export(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Event id or a unique prefix")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-F",
            metavar="md|json",
            help="md: a GitHub task list; json: the job as avo status --json",
        ),
    ] = "md",
    out_file: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write to FILE (atomically); - is stdout"
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Export a completed job's summary and checklist, ready for a PR template or an issue."""
    from avo_cli import config, output
    from avo_cli.errors import OutputError, WrongState
    from avo_cli.export import FORMATS, to_markdown
    from avo_cli.jobview import dump_json, job_json
    from avo_cli.store import open_store

    if fmt not in FORMATS:
        raise AvoError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}", ExitCode.USAGE)
    if out_file == "":
        raise AvoError("empty --output path: name a file, or - for stdout", ExitCode.USAGE)
    store = open_store(config.db_location(db), create=False)
    try:
        row = store.get(job_id)
    finally:
        store.close()
    if row.status != "completed":
        raise WrongState(f"job {row.event_id} is {row.status}: only completed jobs can be exported")
    job = job_json(row)
    text = to_markdown(job) if fmt == "md" else dump_json(job) + "\n"
    if out_file is None or out_file == "-":
        output.data(text)
        return
    from avo_cli.files import write_atomic

    try:
        write_atomic(out_file, text)
    except OSError as exc:
        raise OutputError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    output.info(f"wrote {out_file}")


def _register_config() -> None:
    from avo_cli.config_cmd import config_app

    app.add_typer(config_app, name="config")


_register_config()


@app.command(epilog="Example: AVO_DB=postgresql://avo@db.internal/avo avo migrate")
def migrate(json_out: JsonOption = False, db: DbOption = None) -> None:
    """Create or upgrade the database schema now (every command also does it on first use).

    Safe to run from many machines at once: PostgreSQL migrations take an
    advisory lock, SQLite ones a write lock.
    """
    from avo_cli import config, output
    from avo_cli.jobview import dump_json
    from avo_cli.store import is_postgres, open_store

    url = config.db_location(db)
    store = open_store(url)
    try:
        if is_postgres(url):
            from avo_cli.store.postgres import PostgresStore, display_url

            assert isinstance(store, PostgresStore)
            backend, where, version = "postgresql", display_url(url), store.schema_version()
        else:
            from avo_cli.store.sqlite import SCHEMA_VERSION

            backend, where, version = "sqlite", store.url, SCHEMA_VERSION
    finally:
        store.close()
    if json_out:
        output.data(dump_json({"backend": backend, "database": where, "schema_version": version}))
    else:
        output.data(f"{where}: {backend} schema version {version}")


@app.command(epilog="Example: avo stats --json | jq .cost_usd")
def stats(json_out: JsonOption = False, db: DbOption = None) -> None:
    """Totals: jobs per status, tokens and cost of every model call recorded."""
    from avo_cli import config, output
    from avo_cli.errors import NotFound
    from avo_cli.jobview import dump_json
    from avo_cli.stats import collect, lines
    from avo_cli.store import open_store

    try:
        store = open_store(config.db_location(db), create=False)
    except NotFound:
        store = None  # no database yet: nothing queued, nothing spent
    try:
        totals = collect(store)
    finally:
        if store is not None:
            store.close()
    if json_out or not output.stdout_is_tty():
        output.data(dump_json(totals))
    else:
        output.data("\n".join(output.clean(line) for line in lines(totals)))


def main() -> None:
    """Console entry point. ``AvoGroup.invoke`` maps errors inside commands; this
    catches what happens outside them (option callbacks, start-up)."""
    from avo_cli import output

    try:
        app()
    except AvoError as exc:
        if os.environ.get("AVO_RAISE_ERRORS"):
            raise
        output.error(exc.message)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(int(ExitCode.OK))
    except SystemExit as exc:
        _exit_now_if_heavy(exc.code)
        raise


def _exit_now_if_heavy(code: object) -> None:
    """Skip interpreter teardown once the OpenAI client is loaded.

    Tearing down its ~700 pydantic models and the worker's objects costs
    0.1-0.2 s after the work is done (bench/model_drain.py), on every ``avo
    work`` or ``avo run`` in a CI step. By now every command has closed its
    store (commits are durable at COMMIT) and written its output, so only the
    standard streams need a flush. Commands that never load openai exit normally.
    """
    if "openai" not in sys.modules or not (code is None or isinstance(code, int)):
        return
    try:
        if "logging" in sys.modules:  # avo serve's uvicorn logs: flush their handlers
            import logging

            logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and not stream.closed:
                stream.flush()
    except BrokenPipeError:
        code = int(ExitCode.OK)  # the reader left, as in main()
    except OSError:
        return  # let the normal exit report it
    os._exit(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
