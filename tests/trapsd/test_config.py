from __future__ import annotations

from pathlib import Path

import pytest

from trapsapi.errors import ConfigError, ExitCode
from trapsd.config import AgentSettings, config_path, load


def test_defaults() -> None:
    settings = load(None, None, {"TRAPSD_CONFIG": "/nonexistent/trapsd.toml"})
    assert settings == AgentSettings()
    assert settings.state_dir == Path("/var/lib/trapsd")
    assert settings.batch_size == 500
    assert settings.outbox_max_bytes == 256 * 1024 * 1024


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "trapsd.toml"
    config.write_text('batch_size = 50\nstate_dir = "/srv/a"\nexclude_mounts = ["/backup"]\n')
    env = {"TRAPSD_CONFIG": str(config), "TRAPSD_BATCH_SIZE": "60"}
    settings = load(None, {"state_dir": tmp_path / "b"}, env)
    assert settings.batch_size == 60
    assert settings.state_dir == tmp_path / "b"
    assert settings.exclude_mounts == ["/backup"]


def test_explicit_config_path_wins_and_must_exist(tmp_path: Path) -> None:
    assert config_path(tmp_path / "x.toml", {"TRAPSD_CONFIG": "/y"}) == tmp_path / "x.toml"
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "missing.toml", None, {})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRAPSD_BATCH_SIZE": "lots"}, "TRAPSD_BATCH_SIZE: invalid value 'lots'"),
        ({"TRAPSD_BATCH_SIZE": "5000"}, "batch_size: must be between 1 and 1000"),
        ({"TRAPSD_MALWARE_MECHANISM": "ebpf"}, "malware_mechanism: 'ebpf' is not one of"),
        ({"TRAPSD_WATCHDOG_TIMEOUT_S": "0"}, "watchdog_timeout_s: must be greater than 0"),
        ({"TRAPSD_IGNORE_MARKS": "maybe"}, "expected true or false"),
        ({"TRAPSD_LOG_LEVEL": "loud"}, "log_level"),
        (
            {"TRAPSD_BEHAVIOUR_STORM_PERIOD_MS": "250"},
            r"behaviour_storm_period_ms: must be between 0 \(off\) and 100",
        ),
    ],
)
def test_bad_values_are_one_line_usage_errors(env: dict[str, str], message: str) -> None:
    env = {"TRAPSD_CONFIG": "/nonexistent", **env}
    with pytest.raises(ConfigError, match=message) as info:
        load(None, None, env)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_bad_toml_and_unknown_keys_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "trapsd.toml"
    config.write_text("batch_size = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(config, None, {})
    config.write_text("batchsize = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        load(config, None, {})
