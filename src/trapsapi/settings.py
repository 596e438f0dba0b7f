"""Settings for the lean programs (trapsd, trapsctl) without pydantic.

A settings class is a dataclass. Values come, highest first, from explicit overrides (the
command line), environment variables ``<PREFIX><FIELD>`` (e.g. ``TRAPSD_STATE_DIR``), a TOML
file, then the dataclass defaults. Every bad value is a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from trapsapi.errors import ConfigError

S = TypeVar("S")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, kind: Any, value: Any, origin: str) -> Any:
    """Convert one raw value (a string from the env, or a TOML value) to the field's type."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None or value == "":
            return None
        kind = options[0]
    where = f"{origin}: {name}"
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind in (int, float):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            number = kind(value)
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if kind is Path:
            return Path(str(value)).expanduser()
        if typing.get_origin(kind) is list or kind is list:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ValueError("expected a list")
            return [str(i).strip() for i in items if str(i).strip()]
        if kind is str:
            if not isinstance(value, str | int | float):
                raise ValueError("expected a string")
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {value!r} ({exc})") from None
    raise ConfigError(f"{where}: unsupported setting type {kind!r}")  # pragma: no cover


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def load_settings(
    cls: type[S],
    prefix: str,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Build ``cls`` from overrides > environment > TOML file > defaults."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    file_values = read_toml(config_file) if config_file else {}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - fields)
    if unknown:
        raise ConfigError(f"{config_file}: unknown setting {unknown[0]!r}")
    values: dict[str, Any] = {}
    for name in sorted(fields):
        kind = hints[name]
        env_name = prefix + name.upper()
        if overrides and overrides.get(name) is not None:
            values[name] = overrides[name]
        elif env_name in env:
            values[name] = _coerce(env_name, kind, env[env_name], "environment")
        elif name in file_values:
            values[name] = _coerce(name, kind, file_values[name], str(config_file))
    return cls(**values)
