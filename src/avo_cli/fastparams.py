"""Keep pydantic off the start-up path of ``avo submit`` and ``avo status``.

typer 0.29 coerces every parameter through a pydantic ``TypeAdapter``, built
lazily the first time the parameter is processed, even when its value is
``None`` (an option not given). Importing pydantic and building those
adapters is most of a typer CLI's start-up time (~100 ms on a laptop, more
than the interpreter, SQLite and avo together).

``install`` gives every avo parameter a runtime coercer that answers the
two cases that need no pydantic at all, exactly as typer would:

* a missing value: ``None`` (or ``()`` for a multi-value parameter), which
  typer's own ``RuntimeParam.coerce`` returns without looking at the type;
* a ``str`` (or list of ``str``) parameter given strings on the command
  line: the strings themselves;
* an ``int``/``float`` parameter whose value already has exactly that type
  and lies within its ``min``/``max`` (a declared default such as
  ``grace: float = 30.0``): the value itself.

Anything else (numbers with bounds, choices, bytes from the environment) is
handed to the adapter typer builds, so validation and error messages are
unchanged. If typer's internals move, ``install`` does nothing and typer's
own path runs (tests/test_imports.py notices the slower path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - a typer without the coercion layer
    RuntimeParam = None  # type: ignore[assignment,misc]


_LIST_OF_STR = list[str]

if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _CheapParam(RuntimeParam):
        """Strings pass through; any other value goes to typer's adapter."""

        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation = self.annotation
            if annotation is str and type(value) is str:
                return value
            if (
                annotation == _LIST_OF_STR
                and isinstance(value, (list, tuple))
                and all(type(v) is str for v in value)
            ):
                return list(value)
            if annotation in (int, float) and type(value) is annotation and self._in_bounds(value):
                return value  # a declared default such as ``grace: float = 30.0``
            return self._typer(value, param, ctx)

        def _in_bounds(self, value: float) -> bool:
            info = self.parameter_info
            low, high = info.min, info.max
            return (low is None or value >= low) and (high is None or value <= high)

        def _typer(self, value: Any, param: Any, ctx: Any) -> Any:
            real = build_runtime_param(self.descriptor)
            param._runtime_param = real  # later values go straight to typer's coercer
            return real._coerce_value(value, param=param, ctx=ctx)


def _cheap(param: Any) -> None:
    if getattr(param, "_runtime_param", 0) is not None:
        return  # already built (or not a typer parameter)
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or descriptor.is_file:
        return
    param._runtime_param = _CheapParam(
        parameter_info=descriptor.parameter_info,
        annotation=descriptor.annotation,
        descriptor=descriptor,
    )


def install(params: list[Any]) -> None:
    """Give these typer parameters the pydantic-free coercer (idempotent)."""
    if RuntimeParam is None:
        return
    for param in params:
        if isinstance(param, _TyperParameter):
            _cheap(param)
