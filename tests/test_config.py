"""Settings precedence (flag > env > config file > default) and ``avo config``."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avo_cli.config import config_path, load_settings
from avo_cli.config_cmd import edit_text, mask, mask_url, toml_value, update_file
from avo_cli.errors import ConfigError

KEY = "sk-proj-SECRET-0123456789abcd"


def write_config(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence ------------------------------------------------------------------


def test_default_then_file_then_env_then_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.model, s.origins["model"]) == ("gpt-4o-mini", "default")

    write_config('model = "from-file"\ntimeout = 12\n')
    s = load_settings()
    assert (s.model, s.origins["model"]) == ("from-file", "config file")
    assert (s.timeout, s.origins["timeout"]) == (12.0, "config file")

    monkeypatch.setenv("AVO_MODEL", "from-env")
    s = load_settings()
    assert (s.model, s.origins["model"]) == ("from-env", "env AVO_MODEL")
    assert s.origins["timeout"] == "config file"  # others keep their own origin

    s = load_settings(model="from-flag")
    assert (s.model, s.origins["model"]) == ("from-flag", "flag")


def test_config_show_reports_origins(run_avo: Any) -> None:
    write_config('engine = "local"\nmax_attempts = 5\n')
    proc = run_avo("config", "show", env={"AVO_MAX_ATTEMPTS": "7"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # piped: JSON without asking
    assert data["path"] == str(config_path())
    got = data["settings"]
    assert got["engine"] == {"value": "local", "origin": "config file", "env": "AVO_ENGINE"}
    assert got["max_attempts"] == {
        "value": 7,
        "origin": "env AVO_MAX_ATTEMPTS",
        "env": "AVO_MAX_ATTEMPTS",
    }
    assert got["model"]["origin"] == "default"


def test_config_file_drives_the_worker_and_env_overrides_it(run_avo: Any, doc: Any) -> None:
    path = str(doc("# T\n\n## A\n- You must test.\n"))
    assert run_avo("config", "set", "engine", "nonsense").returncode == 0
    proc = run_avo("run", path)
    assert proc.returncode == 8 and "unknown engine 'nonsense'" in proc.stderr
    proc = run_avo("run", path, env={"AVO_ENGINE": "local"})
    assert proc.returncode == 0, proc.stderr
    proc = run_avo("run", "--engine", "local", path, env={"AVO_ENGINE": "nonsense"})
    assert proc.returncode == 0, proc.stderr  # the flag beats the environment


# --- masking -----------------------------------------------------------------------


def test_mask() -> None:
    assert mask(KEY) == "sk-****abcd"
    assert mask("0123456789abcdefXYZW") == "****XYZW"
    assert mask("short") == "****"
    assert mask_url("postgresql://avo:hunter2@db:5432/avo") == "postgresql://avo:****@db:5432/avo"
    assert mask_url("http://localhost:11434/v1") == "http://localhost:11434/v1"


def test_api_key_is_never_shown(run_avo: Any) -> None:
    write_config(f'api_key = "{KEY}"\n')
    for args in (("config", "show"), ("config", "show", "--json")):
        proc = run_avo(*args, env={"AVO_DB": "postgresql://u:pw-SECRET@127.0.0.1:1/x"})
        assert proc.returncode == 0, proc.stderr
        assert KEY not in proc.stdout + proc.stderr and "SECRET" not in proc.stdout
        data = json.loads(proc.stdout)["settings"]
        assert data["api_key"] == {
            "value": "sk-****abcd",
            "origin": "config file",
            "env": "OPENAI_API_KEY",
        }
        assert data["db"]["value"] == "postgresql://u:****@127.0.0.1:1/x"
    proc = run_avo("config", "show", "--json", env={"OPENAI_API_KEY": "sk-env-key-9876543210wxyz"})
    api = json.loads(proc.stdout)["settings"]["api_key"]
    assert api == {"value": "sk-****wxyz", "origin": "env OPENAI_API_KEY", "env": "OPENAI_API_KEY"}


# --- writing the file ----------------------------------------------------------------


def test_set_writes_private_file_atomically_and_keeps_comments(run_avo: Any) -> None:
    path = write_config('# my settings\nmodel = "old"  # a comment\n\n[prices]\nx = 1\n')
    path.chmod(0o644)
    for key, value in (("model", "gpt-4o"), ("timeout", "2.5"), ("cache", "off"), ("lease", "9")):
        proc = run_avo("config", "set", key, value)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# my settings\n")
    assert "[prices]\nx = 1\n" in text  # a table of someone else's survives
    parsed = tomllib.loads(text)
    assert parsed["model"] == "gpt-4o" and parsed["timeout"] == 2.5
    assert parsed["cache"] is False and parsed["lease"] == 9.0
    assert parsed["prices"] == {"x": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_set_and_unset_write_through_a_symlinked_config(run_avo: Any, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "avo.toml"
    real.write_text('# tracked in git\nengine = "local"\n', encoding="utf-8")
    real.chmod(0o640)
    link = config_path()
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    proc = run_avo("config", "set", "model", "gpt-4o")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.resolve() == real
    assert tomllib.loads(real.read_text(encoding="utf-8")) == {"engine": "local", "model": "gpt-4o"}
    assert real.read_text(encoding="utf-8").startswith("# tracked in git\n")
    assert stat.S_IMODE(real.stat().st_mode) == 0o600  # narrowed to 0600, never widened
    assert run_avo("config", "unset", "engine").returncode == 0
    assert link.is_symlink()
    assert tomllib.loads(real.read_text(encoding="utf-8")) == {"model": "gpt-4o"}
    real.chmod(0o400)  # narrower than 0600: kept
    assert run_avo("config", "set", "engine", "local").returncode == 0
    assert link.is_symlink() and stat.S_IMODE(real.stat().st_mode) == 0o400
    assert sorted(p.name for p in dotfiles.iterdir()) == ["avo.toml"]  # no temp file left
    assert [p.name for p in link.parent.iterdir()] == ["config.toml"]


def test_unset_removes_the_key(run_avo: Any) -> None:
    path = write_config('model = "x"\nengine = "local"\n')
    proc = run_avo("config", "unset", "model")
    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {"engine": "local"}
    assert json.loads(run_avo("config", "show").stdout)["settings"]["model"]["origin"] == (
        "default"
    )


def test_set_api_key_from_stdin_warns_and_never_echoes(run_avo: Any) -> None:
    proc = run_avo("config", "set", "api_key", "-", input=KEY + "\n")
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    assert "warning:" in proc.stderr and "OPENAI_API_KEY" in proc.stderr
    path = config_path()
    assert tomllib.loads(path.read_text(encoding="utf-8"))["api_key"] == KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    quiet = run_avo("config", "set", "-q", "api_key", KEY)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("timeout", "-3"), "avo: error: invalid value for timeout: '-3' (must be > 0)\n"),
        (("max_attempts", "many"), "avo: error: invalid value for max_attempts: 'many'"),
        (("colour", "blue"), "avo: error: unknown setting 'colour'"),
    ],
)
def test_bad_values_exit_10_with_one_line(
    run_avo: Any, args: tuple[str, str], message: str
) -> None:
    proc = run_avo("config", "set", *args)
    assert proc.returncode == 10
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1
    assert not config_path().exists()  # nothing half-written


def test_broken_config_file_exits_10(run_avo: Any) -> None:
    write_config("model = [\n")
    for args in (("config", "show"), ("config", "set", "model", "x"), ("work",)):
        proc = run_avo(*args)
        assert proc.returncode == 10, (args, proc.stderr)
        assert proc.stderr.startswith("avo: error: invalid config file ")
        assert proc.stderr.count("\n") == 1
    assert config_path().read_text(encoding="utf-8") == "model = [\n"  # left alone


def test_config_path_honours_avo_config(run_avo: Any, tmp_path: Path) -> None:
    custom = tmp_path / "elsewhere.toml"
    proc = run_avo("config", "path", env={"AVO_CONFIG": str(custom)})
    assert proc.stdout == f"{custom}\n"
    proc = run_avo("config", "path", "--json", env={"AVO_CONFIG": str(custom)})
    assert json.loads(proc.stdout) == {"path": str(custom), "exists": False}


# --- the TOML writer ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
    )
)
def test_toml_value_round_trips(value: Any) -> None:
    assert tomllib.loads(f"k = {toml_value(value)}\n")["k"] == value


def test_edit_text_inserts_before_tables_and_replaces_in_place() -> None:
    text = 'a = 1\n\n[t]\nmodel = "table-scoped"\n'
    out = edit_text(text, "model", "top")
    assert tomllib.loads(out) == {"a": 1, "model": "top", "t": {"model": "table-scoped"}}
    out2 = edit_text(out, "model", "again")
    assert out2.count("model = ") == 2 and tomllib.loads(out2)["model"] == "again"
    assert tomllib.loads(edit_text(out2, "model", None)) == {"a": 1, "t": {"model": "table-scoped"}}


def test_update_file_refuses_what_it_cannot_edit(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('model = """multi\nline"""\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        update_file("model", "x", path)
    assert path.read_text(encoding="utf-8") == 'model = """multi\nline"""\n'


KEYS = st.sampled_from(["model", "engine", "timeout", "max_attempts", "cache", "db", "other"])
VALUES = st.one_of(
    st.text(max_size=20), st.integers(-1000, 1000), st.booleans(), st.floats(0.1, 1e6)
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(KEYS, VALUES, max_size=6),
    KEYS,
    st.one_of(st.none(), VALUES),
    st.booleans(),
)
def test_edit_text_changes_one_key_and_nothing_else(
    before: dict[str, Any], key: str, value: Any, with_table: bool
) -> None:
    lines = ["# avo settings", ""]
    lines += [f"{k} = {toml_value(v)}  # note" for k, v in before.items()]
    if with_table:
        lines += ["", "[extra]", f"{key} = 1"]
    text = "\n".join(lines) + "\n"
    after = tomllib.loads(edit_text(text, key, value))
    expected = {k: v for k, v in before.items() if k != key}
    if value is not None:
        expected[key] = value
    if with_table:
        assert after.pop("extra") == {key: 1}
    assert after == expected


def test_edit_text_splits_lines_on_newline_only() -> None:
    text = 'model = "a\x85b\u2028c"\nengine = "x"\n'  # raw NEL / LINE SEPARATOR inside a string
    out = edit_text(text, "engine", "local")
    assert tomllib.loads(out) == {"model": "a\x85b\u2028c", "engine": "local"}
    assert tomllib.loads(edit_text(text, "model", None)) == {"engine": "x"}
