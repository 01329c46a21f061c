"""``avo config``: show where each setting comes from; edit the TOML config file.

The file is flat ``key = value`` TOML. ``set``/``unset`` edit it line by line
so comments and anything else in it survive, check the result parses back to
the intended value, and replace the file atomically (through a symlink, see
``files.write_atomic``) with mode 0600 at most (it may hold an API key). No
TOML writer dependency: the values are strings, ints, floats and bools.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from avo_cli.errors import ConfigError

# --- values ------------------------------------------------------------------

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_TOML_ESCAPES["\r"] = "\\r"


def toml_value(value: Any) -> str:
    """A TOML literal for a flat setting value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in _TOML_ESCAPES:
                out.append(_TOML_ESCAPES[ch])
            elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029":
                out.append(f"\\u{ord(ch):04X}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise ConfigError(f"cannot write {type(value).__name__} values to the config file")


def mask(value: str) -> str:
    """A secret as ``sk-****abcd`` (long keys) or ``****``: enough to tell keys apart."""
    if len(value) < 12:
        return "****"
    prefix = value[:3] if value.startswith("sk-") else ""
    return f"{prefix}****{value[-4:]}"


def mask_url(url: str) -> str:
    """Hide a password embedded in a URL (``scheme://user:secret@host``)."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1****@", url)


def display(name: str, value: Any) -> Any:
    from avo_cli.config import SECRET_SETTINGS

    if value is None:
        return None
    if name in SECRET_SETTINGS:
        return mask(str(value))
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


# --- the file ----------------------------------------------------------------


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")


def edit_text(text: str, key: str, value: Any | None) -> str:
    """``text`` with ``key`` set to ``value`` (or removed when None), top-level table only."""
    # only "\n" ends a TOML line (str.splitlines would also split on U+0085, U+2028...)
    lines = re.findall(r"[^\n]*\n|[^\n]+\Z", text)
    end = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    pattern = _key_line(key)
    hits = [i for i in range(end) if pattern.match(lines[i])]
    new_line = None if value is None else f"{key} = {toml_value(value)}\n"
    for i in reversed(hits):
        del lines[i]
    if new_line is not None:
        at = hits[0] if hits else end
        if not hits:
            while at > 0 and not lines[at - 1].strip():
                at -= 1  # keep blank lines before a following [table]
            if at > 0 and not lines[at - 1].endswith("\n"):
                lines[at - 1] += "\n"
        lines.insert(at, new_line)
    return "".join(lines)


def update_file(key: str, value: Any | None, path: Path | None = None) -> Path:
    """Set (or with None remove) one key in the config file, atomically, mode 0600 at most.

    A symlinked config file (dotfiles) is written through, never replaced.
    """
    import tomllib

    from avo_cli.config import config_path, read_config_file
    from avo_cli.files import write_atomic

    path = path or config_path()
    read_config_file(path)  # refuses a file that does not parse
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    new = edit_text(text, key, value)
    try:
        parsed = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        parsed = None
    ok = parsed is not None and (key not in parsed if value is None else parsed.get(key) == value)
    if not ok:  # e.g. a multi-line value or a dotted key we do not rewrite
        raise ConfigError(f"cannot edit {key} in {path} safely; edit the file by hand")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, new, mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write config file {path}: {exc.strerror}") from None
    return path


def rows(**flags: Any) -> list[dict[str, Any]]:
    """Every setting with its shown value, origin and environment variable."""
    from avo_cli.config import SETTING_NAMES, env_var, load_settings

    settings = load_settings(**flags)
    return [
        {
            "name": name,
            "value": display(name, getattr(settings, name)),
            "origin": settings.origins.get(name, "default"),
            "env": env_var(name),
        }
        for name in SETTING_NAMES
    ]


# --- commands ------------------------------------------------------------------

config_app = typer.Typer(
    name="config",
    help="Show or edit settings (flags > environment > config file > defaults).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the default when piped)")]


@config_app.command("path", epilog='Example: $EDITOR "$(avo config path)"')
def path_cmd(json_out: JsonOption = False) -> None:
    """Print the config file's path (it may not exist yet)."""
    from avo_cli import output
    from avo_cli.config import config_path

    p = str(config_path())
    if json_out:
        from avo_cli.jobview import dump_json

        output.data(dump_json({"path": p, "exists": Path(p).exists()}))
    else:
        output.data(p)


@config_app.command(
    "show", epilog="Example: avo config show --json | jq -r .settings.engine.origin"
)
def show_cmd(json_out: JsonOption = False) -> None:
    """Show every setting, its value and where it came from (API keys masked)."""
    from avo_cli import output
    from avo_cli.config import config_path

    table = rows()
    if json_out or not output.stdout_is_tty():
        from avo_cli.jobview import dump_json

        settings = {r["name"]: {k: r[k] for k in ("value", "origin", "env")} for r in table}
        output.data(dump_json({"path": str(config_path()), "settings": settings}))
    else:
        from avo_cli.render import render_config

        render_config(table, str(config_path()))


@config_app.command(
    "set",
    epilog='Example: avo config set engine local; printf %s "$KEY" | avo config set api_key -',
    context_settings={"ignore_unknown_options": True},  # VALUE may start with "-"
)
def set_cmd(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting name (see avo config show)")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="New value; - reads stdin")],
) -> None:
    """Write one setting to the config file."""
    from avo_cli import output
    from avo_cli.config import SECRET_SETTINGS, coerce, env_var

    if value == "-":
        value = sys.stdin.readline().rstrip("\r\n")
    typed = coerce(key, value)
    path = update_file(key, typed)
    shown = display(key, typed)
    output.info(f"{key} = {shown} in {path}")
    if key in SECRET_SETTINGS:
        output.info(
            f"warning: {key} is now stored in a file (mode 0600); "
            f"{env_var(key)} in the environment or a secrets manager is safer"
        )


@config_app.command("unset", epilog="Example: avo config unset model")
def unset_cmd(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting name")],
) -> None:
    """Remove one setting from the config file (its default or env value applies)."""
    from avo_cli import output
    from avo_cli.config import SETTING_NAMES, config_path, read_config_file

    if key not in SETTING_NAMES and key not in read_config_file():
        raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTING_NAMES)}")
    if not config_path().exists():
        output.info(f"{key} is not set ({config_path()} does not exist)")
        return
    path = update_file(key, None)
    output.info(f"{key} removed from {path}")
