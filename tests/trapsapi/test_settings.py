from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trapsapi.errors import ConfigError, ExitCode
from trapsapi.settings import load_settings


@dataclasses.dataclass
class Example:
    state_dir: Path = Path("/var/lib/example")
    batch_size: int = 500
    timeout_s: float = 10.0
    verbose: bool = False
    servers: list[str] = dataclasses.field(default_factory=list)
    group: str | None = None


def test_defaults_then_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text('batch_size = 10\nservers = ["https://a", "https://b"]\ngroup = "adm"\n')
    env = {"EX_BATCH_SIZE": "20", "EX_VERBOSE": "yes"}
    settings = load_settings(Example, "EX_", config, {"timeout_s": 2.5}, env)
    assert settings.batch_size == 20
    assert settings.verbose is True
    assert settings.timeout_s == 2.5
    assert settings.servers == ["https://a", "https://b"]
    assert settings.group == "adm"
    assert settings.state_dir == Path("/var/lib/example")


def test_env_lists_are_comma_separated() -> None:
    settings = load_settings(Example, "EX_", None, None, {"EX_SERVERS": "https://a, https://b"})
    assert settings.servers == ["https://a", "https://b"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EX_BATCH_SIZE": "many"}, "EX_BATCH_SIZE: invalid value 'many'"),
        ({"EX_BATCH_SIZE": "-1"}, "must not be negative"),
        ({"EX_VERBOSE": "perhaps"}, "expected true or false"),
    ],
)
def test_bad_environment_values_give_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(Example, "EX_", None, None, env)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_bad_file_is_named_in_the_error(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text("batch_size = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(Example, "EX_", config, None, {})
    config.write_text("batchsize = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        load_settings(Example, "EX_", config, None, {})


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(Example, "EX_", tmp_path / "none.toml", None, {}).batch_size == 500
