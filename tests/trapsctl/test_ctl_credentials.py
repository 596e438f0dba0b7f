"""Where the token comes from and where login keeps it: env > keyring > insecure file."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from ctl_helpers import MemoryKeyring, run_cli

from trapsapi.errors import AuthError, ConfigError, UsageError
from trapsctl.config import ConsoleConfig, Context, load_config, render_config, save_config
from trapsctl.credentials import (
    KEYRING_SERVICE,
    CredentialStoreError,
    InsecureTokenFile,
    keyring_problem,
    resolve_credential,
    store_token,
)

PROD = Context(name="prod", server="https://esm.example.org:2125", username="alice")
LAB = Context(name="lab", server="http://127.0.0.1:2125", username="bob", token_storage="file")


@pytest.fixture
def config() -> ConsoleConfig:
    return ConsoleConfig(current_context="prod", contexts={"prod": PROD, "lab": LAB})


@pytest.fixture
def token_file(config_dir: Path) -> InsecureTokenFile:
    return InsecureTokenFile(config_dir / "credentials.json")


def test_keyring_token_for_the_current_context(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    store_token(PROD, "tok-prod", token_file)
    assert memory_keyring.secrets == {
        (KEYRING_SERVICE, "prod:alice@https://esm.example.org:2125"): "tok-prod"
    }
    found = resolve_credential(config, environ={}, token_file=token_file)
    assert (found.server, found.token, found.source) == (PROD.server, "tok-prod", "keyring")
    assert "tok-prod" not in repr(found)


def test_env_token_wins_over_the_keyring(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    store_token(PROD, "tok-prod", token_file)
    found = resolve_credential(config, environ={"TRAPSCTL_TOKEN": "tok-env"}, token_file=token_file)
    assert (found.server, found.token, found.source) == (PROD.server, "tok-env", "TRAPSCTL_TOKEN")


def test_server_flag_picks_the_context_of_that_server(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    store_token(PROD, "tok-prod", token_file)
    store_token(LAB, "tok-lab", token_file)
    found = resolve_credential(
        config, server="http://127.0.0.1:2125/", environ={}, token_file=token_file
    )
    assert (found.token, found.source) == ("tok-lab", str(token_file.path))
    assert found.context == LAB


def test_a_stored_token_is_never_sent_to_another_server(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    store_token(PROD, "tok-prod", token_file)
    with pytest.raises(AuthError, match=re.escape("not logged in to https://evil.example")):
        resolve_credential(config, server="https://evil.example", environ={}, token_file=token_file)
    env_only = resolve_credential(
        config,
        server="https://evil.example",
        environ={"TRAPSCTL_TOKEN": "t"},
        token_file=token_file,
    )
    assert (env_only.server, env_only.token) == ("https://evil.example", "t")


def test_context_option_and_unknown_context(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    store_token(LAB, "tok-lab", token_file)
    assert (
        resolve_credential(config, context_name="lab", environ={}, token_file=token_file).token
        == "tok-lab"
    )
    with pytest.raises(UsageError, match=r"unknown context 'nope' \(known: lab, prod\)"):
        resolve_credential(config, context_name="nope", environ={}, token_file=token_file)


def test_nothing_stored_is_not_logged_in(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    with pytest.raises(AuthError, match="not logged in \\(context 'prod'\\)") as info:
        resolve_credential(config, environ={}, token_file=token_file)
    assert info.value.exit_code == 4
    with pytest.raises(AuthError, match="not logged in: run trapsctl login"):
        resolve_credential(ConsoleConfig(), environ={}, token_file=token_file)


def test_insecure_file_is_0600_in_a_0700_dir_and_holds_only_tokens(
    token_file: InsecureTokenFile, null_keyring: None
) -> None:
    store_token(LAB, "tok-lab", token_file)
    assert stat.S_IMODE(token_file.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.path.parent.stat().st_mode) == 0o700
    assert token_file.load(LAB.credential_key) == "tok-lab"
    assert token_file.delete(LAB.credential_key)
    assert not token_file.path.exists()


def test_a_world_readable_token_file_is_reported(
    token_file: InsecureTokenFile, capsys: pytest.CaptureFixture[str]
) -> None:
    store_token(LAB, "tok-lab", token_file)
    token_file.path.chmod(0o644)
    assert token_file.load(LAB.credential_key) == "tok-lab"
    assert "readable by other users" in capsys.readouterr().err


def test_keyring_backends_that_cannot_keep_a_secret(memory_keyring: MemoryKeyring) -> None:
    assert keyring_problem() is None


def test_null_keyring_is_refused(null_keyring: None) -> None:
    assert "no usable OS keyring" in (keyring_problem() or "")


def test_locked_keyring_fails_with_a_hint(
    locked_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    with pytest.raises(CredentialStoreError, match="use --insecure-storage"):
        store_token(PROD, "tok", token_file)


def test_login_refuses_without_a_keyring_before_asking_for_the_password(
    null_keyring: None, config_dir: Path
) -> None:
    result = run_cli(
        "login",
        "--server",
        "http://127.0.0.1:9",
        "--username",
        "admin",
        "--password-stdin",
        input="pw\n",
    )
    assert result.exit_code == 1
    assert "no usable OS keyring" in result.stderr
    assert "--insecure-storage" in result.stderr
    assert not config_dir.exists()  # nothing written


def test_login_without_a_terminal_or_password_stdin_is_a_usage_error(
    memory_keyring: MemoryKeyring,
) -> None:
    result = run_cli("login", "--server", "http://127.0.0.1:9", "--username", "admin")
    assert result.exit_code == 2
    assert "--password-stdin" in result.stderr


def test_first_login_needs_server_and_username(memory_keyring: MemoryKeyring) -> None:
    assert run_cli("login", "--username", "a", "--password-stdin", input="x\n").exit_code == 2
    assert (
        run_cli("login", "--server", "http://h:1", "--password-stdin", input="x\n").exit_code == 2
    )
    bad = run_cli(
        "login", "--server", "ftp://h", "--username", "a", "--password-stdin", input="x\n"
    )
    assert bad.exit_code == 2
    assert "invalid server URL" in bad.stderr


def test_config_round_trip_never_holds_a_token(config: ConsoleConfig, config_dir: Path) -> None:
    path = save_config(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path) == config
    assert "token =" not in path.read_text()
    odd = ConsoleConfig('we"ird ctx', {'we"ird ctx': Context('we"ird ctx', "http://h:1", "a\\b")})
    assert load_config(save_config(odd, config_dir / "odd.toml")) == odd
    assert render_config(ConsoleConfig()).startswith("# trapsctl contexts")


@pytest.mark.parametrize(
    "text",
    [
        "current_context = [",
        "current_context = 3",
        "colour = 'blue'",
        "[contexts.x]\nserver = 'http://h'\n",
        "[contexts.x]\nserver = 'http://h'\nusername = 'a'\ntoken_storage = 'paper'\n",
    ],
)
def test_a_broken_config_file_is_a_one_line_usage_error(text: str, config_dir: Path) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_config()
    result = run_cli("agents", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_contexts_list_and_use(config: ConsoleConfig) -> None:
    save_config(config)
    listed = run_cli("contexts", "list")
    assert listed.stdout.splitlines()[0].split() == [
        "CURRENT",
        "NAME",
        "SERVER",
        "USERNAME",
        "TOKEN",
        "STORAGE",
    ]
    assert run_cli("contexts", "use", "lab").exit_code == 0
    assert load_config().current_context == "lab"
    assert run_cli("contexts", "use", "nope").exit_code == 2
    assert run_cli("context", "list").stdout == run_cli("contexts", "list").stdout  # kubectl's


def test_contexts_current_and_delete(
    config: ConsoleConfig, memory_keyring: MemoryKeyring, token_file: InsecureTokenFile
) -> None:
    save_config(config)
    store_token(PROD, "tok-prod", token_file)
    store_token(LAB, "tok-lab", token_file)
    current = run_cli("contexts", "current")
    assert (current.exit_code, current.stdout) == (0, "prod\n")
    shown = run_cli("contexts", "current", "-o", "json")
    assert '"server": "https://esm.example.org:2125"' in shown.stdout
    assert "tok-prod" not in shown.stdout
    deleted = run_cli("contexts", "delete", "prod")
    assert (deleted.exit_code, deleted.stdout) == (0, "")
    assert deleted.stderr == "Context prod deleted.\n"
    after = load_config()
    assert (list(after.contexts), after.current_context) == (["lab"], None)
    assert memory_keyring.secrets == {}  # the keyring token of prod is gone
    assert token_file.load(LAB.credential_key) == "tok-lab"  # lab's (file) token stays
    none = run_cli("contexts", "current")
    assert none.exit_code == 5 and none.stderr.startswith("error: no current context")
    unknown = run_cli("contexts", "delete", "prod")
    assert unknown.exit_code == 2 and "unknown context 'prod'" in unknown.stderr
    assert list(load_config().contexts) == ["lab"]


def test_an_unreadable_keyring_is_reported_not_hidden(
    config: ConsoleConfig,
    memory_keyring: MemoryKeyring,
    token_file: InsecureTokenFile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def locked(service: str, username: str) -> str | None:
        raise RuntimeError("org.freedesktop.Secret.Error.IsLocked")

    monkeypatch.setattr(memory_keyring, "get_password", locked)
    with pytest.raises(CredentialStoreError, match="IsLocked") as info:
        resolve_credential(config, environ={}, token_file=token_file)
    assert info.value.exit_code == 1


def test_login_over_plain_http_to_another_host_warns(memory_keyring: MemoryKeyring) -> None:
    result = run_cli(
        "login",
        "--server",
        "http://192.0.2.1:9",
        "--username",
        "admin",
        "--password-stdin",
        input="pw\n",
        env={"TRAPSCTL_TIMEOUT": "0.2"},
    )
    assert "plain http" in result.stderr
    assert result.exit_code == 3  # TEST-NET-1 never answers: unreachable, after the timeout


def test_a_bad_environment_value_is_a_usage_error() -> None:
    result = run_cli(
        "agents",
        "list",
        env={"TRAPSCTL_SERVER": "http://h:1", "TRAPSCTL_TOKEN": "t", "TRAPSCTL_TIMEOUT": "soon"},
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: environment: TRAPSCTL_TIMEOUT: invalid value 'soon'")
