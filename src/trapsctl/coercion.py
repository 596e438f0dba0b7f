"""Command-line values converted with the standard library instead of pydantic.

Typer 0.29 converts every non-flag parameter through a pydantic ``TypeAdapter``, which
imports pydantic (about 140 ms, half of a ``trapsctl agents list -o json`` run) on every
invocation and on every TAB of a shell completion. trapsctl only uses simple parameter
types (str, bool, int and float with bounds, str enums, and ``parser=`` functions), so
:func:`install` gives those a plain converter; any other type still goes through Typer's
own conversion. If a Typer release changes the internals this relies on, ``install`` does
nothing and Typer's conversion applies (``tests/trapsctl/test_ctl_speed.py`` notices).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import typer

try:  # Typer internals: guarded, see the module docstring
    from typer._coercion import RuntimeParam, TypeDescriptor
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover
    RuntimeParam = None  # type: ignore[assignment,misc]


def _choices(kind: type[Enum]) -> str:
    return ", ".join(repr(str(member.value)) for member in kind)


def _to_enum(value: Any, kind: type[Enum], case_sensitive: bool) -> Enum:
    if isinstance(value, kind):
        return value
    text = str(value)
    for member in kind:
        candidate = str(member.value)
        if candidate == text or (not case_sensitive and candidate.lower() == text.lower()):
            return member
    raise typer.BadParameter(f"{text!r} is not one of {_choices(kind)}.")


def _to_int(value: Any, low: int | None, high: int | None) -> int:
    if isinstance(value, bool):
        raise typer.BadParameter(f"{value!r} is not a valid integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"{value!r} is not a valid integer.") from None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"{'' if low is None else f'{low}<='}x{'' if high is None else f'<={high}'}"
        raise typer.BadParameter(f"{number} is not in the range {bounds}.")
    return number


def _to_float(value: Any, low: float | None, high: float | None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"{value!r} is not a valid number.") from None
    if (
        number != number
        or (low is not None and number < low)
        or (high is not None and number > high)
    ):
        bounds = f"{'' if low is None else f'{low}<='}x{'' if high is None else f'<={high}'}"
        raise typer.BadParameter(f"{value} is not in the range {bounds}.")
    return number


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise typer.BadParameter(f"{value!r} is not a valid boolean.")


def convert(value: Any, annotation: Any, info: Any) -> Any:
    """Convert one raw command-line value (a str, or the default) to the parameter's type."""
    if info.parser is not None:
        try:
            return info.parser(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _to_enum(value, annotation, info.case_sensitive)
    if annotation is int:
        return _to_int(value, info.min, info.max)
    if annotation is float:
        return _to_float(value, info.min, info.max)
    if annotation is bool:
        return _to_bool(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def handled(descriptor: Any) -> bool:
    """Whether :func:`convert` knows this parameter's type exactly."""
    annotation, info = descriptor.annotation, descriptor.parameter_info
    if descriptor.file_annotation is not None:
        return False
    if info.parser is not None:
        return True
    if annotation in (int, float):
        return not getattr(info, "clamp", False)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return all(isinstance(member.value, str) for member in annotation)
    return annotation in (str, bool)


def install() -> bool:
    """Use :func:`convert` for the simple parameter types; True when it is in place."""
    if RuntimeParam is None or not hasattr(_TyperParameter, "get_runtime_param"):
        return False
    if getattr(_TyperParameter, "_trapsctl_stdlib_coercion", False):
        return True
    runtime_fields = {f.name for f in dataclasses.fields(RuntimeParam)}
    descriptor_fields = {f.name for f in dataclasses.fields(TypeDescriptor)}
    if runtime_fields != {"parameter_info", "annotation"} or not descriptor_fields >= {
        "annotation",
        "parameter_info",
        "file_annotation",
    }:
        return False

    @dataclasses.dataclass(frozen=True)
    class StdlibRuntimeParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return convert(value, self.annotation, self.parameter_info)
            except typer.BadParameter as exc:
                exc.ctx = exc.ctx or ctx
                exc.param = exc.param or param
                raise

    typer_runtime_param = _TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None and handled(self.type_descriptor):
            descriptor = self.type_descriptor
            self._runtime_param = StdlibRuntimeParam(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
        return typer_runtime_param(self)

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
    _TyperParameter._trapsctl_stdlib_coercion = True  # type: ignore[attr-defined]
    return True
