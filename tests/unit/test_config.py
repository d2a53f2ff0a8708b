"""Configuration: precedence (default < file < env < cli), errors, env files, `dagloop config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from model.config import (
    ConfigError,
    QueueSettings,
    Settings,
    describe_settings,
    load_settings,
)
from model.dotenv import DotenvError, parse_env_file

# The seed's /etc/dagu/environment, verbatim.
SEED_ENVIRONMENT = """\
DAGU_HOST=0.0.0.0
DAGU_PORT=8080
DAGU_TZ=America/New_York
DAGU_LOG_FORMAT=json
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def write_config(home: Path, text: str) -> Path:
    path = home / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(home: Path, env: dict[str, str] | None = None, **kwargs: object) -> Settings:
    full_env = {"HOME": str(home.parent), "DAGU_HOME": str(home), **(env or {})}
    return load_settings(env=full_env, **kwargs)  # type: ignore[arg-type]


# -- defaults and home -------------------------------------------------------------------------


def test_defaults_derive_every_path_from_dagu_home(home: Path) -> None:
    settings = load(home)
    assert settings.home == home
    assert settings.dags_dir == home / "dags"
    assert settings.log_dir == home / "logs"
    assert settings.data_dir == home / "data"
    assert settings.base_config == home / "base.yaml"
    assert settings.db_path == home / "data" / "dagloop.db"
    assert (settings.host, settings.port, settings.tz) == ("127.0.0.1", 8080, None)
    assert (settings.log_format, settings.debug, settings.metrics_public) == ("text", False, False)
    assert settings.shutdown_grace_seconds == 20.0
    assert settings.max_dag_file_bytes == 1024 * 1024
    assert settings.queues == () and settings.queues_enabled is True
    assert settings.config_file is None
    assert settings.sources["host"] == "default"
    assert settings.sources["home"] == "env"


def test_home_defaults_to_xdg_config_dir(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings.home == tmp_path / ".config" / "dagu"
    assert settings.sources["home"] == "default"


def test_home_falls_back_to_legacy_dot_dagu_when_it_exists(tmp_path: Path) -> None:
    (tmp_path / ".dagu").mkdir()
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings.home == tmp_path / ".dagu"


def test_relative_dagu_home_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"HOME": str(tmp_path), "DAGU_HOME": "rel"})
    assert settings.home == tmp_path / "rel"


# -- precedence --------------------------------------------------------------------------------

# key, config.yaml text, env name, env value, cli value, attribute, expected file/env/cli values
PRECEDENCE = [
    ("host", "host: 10.0.0.1\n", "DAGU_HOST", "10.0.0.2", "10.0.0.3", "host",
     ("10.0.0.1", "10.0.0.2", "10.0.0.3")),
    ("port", "port: 9001\n", "DAGU_PORT", "9002", 9003, "port", (9001, 9002, 9003)),
    ("logFormat", "logFormat: json\n", "DAGU_LOG_FORMAT", "text", "json", "log_format",
     ("json", "text", "json")),
    ("debug", "debug: true\n", "DAGU_DEBUG", "false", True, "debug", (True, False, True)),
    ("tz", "tz: Europe/Paris\n", "DAGU_TZ", "Asia/Tokyo", "UTC", "tz",
     ("Europe/Paris", "Asia/Tokyo", "UTC")),
    ("metrics", "metrics: public\n", "DAGU_SERVER_METRICS", "private", "public", "metrics_public",
     (True, False, True)),
    ("controller.shutdownGraceSeconds", "controller:\n  shutdownGraceSeconds: 5\n",
     "DAGU_CONTROLLER_SHUTDOWN_GRACE_SECONDS", "6.5", 7, "shutdown_grace_seconds", (5.0, 6.5, 7.0)),
    ("auth.token.value", "auth:\n  token:\n    value: f\n", "DAGU_AUTH_TOKEN", "e", "c",
     "auth_token", ("f", "e", "c")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "text", "env_name", "env_value", "cli_value", "attr", "expected"),
    PRECEDENCE,
    ids=[p[0] for p in PRECEDENCE],
)
def test_precedence_is_default_then_file_then_env_then_cli(
    home: Path,
    key: str,
    text: str,
    env_name: str,
    env_value: str,
    cli_value: object,
    attr: str,
    expected: tuple[object, object, object],
) -> None:
    write_config(home, text)
    from_file = load(home)
    from_env = load(home, {env_name: env_value})
    from_cli = load(home, {env_name: env_value}, overrides={key: cli_value})
    assert getattr(from_file, attr) == expected[0]
    assert getattr(from_env, attr) == expected[1]
    assert getattr(from_cli, attr) == expected[2]
    assert [s.sources[key] for s in (from_file, from_env, from_cli)] == ["file", "env", "cli"]


def test_cli_override_of_none_means_not_given(home: Path) -> None:
    write_config(home, "port: 9001\n")
    assert load(home, overrides={"port": None}).port == 9001


def test_empty_env_value_does_not_override_the_file(home: Path) -> None:
    write_config(home, "host: 10.0.0.1\n")
    assert load(home, {"DAGU_HOST": ""}).host == "10.0.0.1"


def test_file_paths_are_relative_to_the_config_file(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "etc"
    other.mkdir()
    config = other / "dagloop.yaml"
    config.write_text("paths:\n  dagsDir: flows\n  logDir: /var/log/dagu\nworkDir: ../work\n")
    settings = load(home, config_file=config)
    assert settings.dags_dir == other / "flows"
    assert settings.log_dir == Path("/var/log/dagu")
    assert settings.work_dir == tmp_path / "work"
    assert settings.data_dir == home / "data"  # not set: still under DAGU_HOME
    assert settings.config_file == config
    assert settings.sources["configFile"] == "cli"


def test_env_paths_are_made_absolute_from_the_working_dir(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(home, {"DAGU_DAGS_DIR": "mydags", "DAGU_DATA_DIR": "./d"})
    assert settings.dags_dir == tmp_path / "mydags"
    assert settings.data_dir == tmp_path / "d"
    assert settings.db_path == tmp_path / "d" / "dagloop.db"


def test_dagu_config_env_names_the_config_file(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text("port: 7000\n")
    settings = load(home, {"DAGU_CONFIG": str(config)})
    assert settings.port == 7000
    assert settings.sources["configFile"] == "env"


def test_missing_default_config_file_is_fine_but_a_named_one_is_an_error(
    home: Path, tmp_path: Path
) -> None:
    assert load(home).port == 8080
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load(home, config_file=tmp_path / "nope.yaml")


def test_seed_logging_example_config_is_accepted(home: Path) -> None:
    write_config(
        home, "logFormat: json    # text or json\ndebug: true\npaths:\n  logDir: /var/log/dagu\n"
    )
    settings = load(home)
    assert (settings.log_format, settings.debug, settings.log_dir) == (
        "json",
        True,
        Path("/var/log/dagu"),
    )


# -- errors ------------------------------------------------------------------------------------


def test_unknown_key_names_the_file_and_the_dotted_key(home: Path) -> None:
    write_config(home, "paths:\n  dagDir: /x\n")
    with pytest.raises(ConfigError) as info:
        load(home)
    assert "config.yaml: unknown key 'paths.dagDir'" in str(info.value)
    assert str(home / "config.yaml") in str(info.value)


def test_unknown_top_level_key_is_an_error(home: Path) -> None:
    write_config(home, "prot: 8080\n")
    with pytest.raises(ConfigError, match=r"unknown key 'prot'"):
        load(home)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_bad_port_in_file_names_key_and_file(home: Path) -> None:
    write_config(home, "port: eighty\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: port: 'eighty' is not an integer"):
        load(home)


def test_bad_port_in_env_names_the_variable(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"env DAGU_PORT: 'x80' is not an integer"):
        load(home, {"DAGU_PORT": "x80"})


def test_port_out_of_range_is_an_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"port \(cli\): 70000 is out of range"):
        load(home, overrides={"port": 70000})


def test_bad_log_format_names_the_choices(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"env DAGU_LOG_FORMAT: 'xml' is not one of text, json"):
        load(home, {"DAGU_LOG_FORMAT": "xml"})


def test_unknown_time_zone_is_an_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"tz \(env\): unknown time zone 'Mars/Olympus'"):
        load(home, {"DAGU_TZ": "Mars/Olympus"})


def test_unknown_cli_override_key_is_an_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"cli: unknown key 'prot'"):
        load(home, overrides={"prot": 1})


def test_invalid_yaml_is_a_config_error(home: Path) -> None:
    write_config(home, "port: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load(home)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("0", False), ("true", True), ("false", False), ("yes", True), ("no", False),
     ("TRUE", True), ("No", False)],
)  # fmt: skip
def test_env_booleans(home: Path, raw: str, expected: bool) -> None:
    assert load(home, {"DAGU_DEBUG": raw}).debug is expected


def test_bad_env_boolean_is_an_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"env DAGU_DEBUG: 'maybe' is not a boolean"):
        load(home, {"DAGU_DEBUG": "maybe"})


# -- aliases, queues, compatibility keys -------------------------------------------------------


def test_legacy_env_aliases_are_honoured(home: Path, tmp_path: Path) -> None:
    settings = load(
        home,
        {
            "DAGU_BASICAUTH_USERNAME": "old-user",
            "DAGU_BASICAUTH_PASSWORD": "old-pass",
            "DAGU_AUTHTOKEN": "old-token",
            "DAGU_DAGS": str(tmp_path / "old-dags"),
        },
    )
    assert settings.auth_basic_username == "old-user"
    assert settings.auth_basic_password == "old-pass"
    assert settings.auth_token == "old-token"
    assert settings.dags_dir == tmp_path / "old-dags"
    assert settings.sources["auth.token.value"] == "env"


def test_current_env_name_wins_over_its_legacy_alias(home: Path) -> None:
    settings = load(home, {"DAGU_AUTH_TOKEN": "new", "DAGU_AUTHTOKEN": "old"})
    assert settings.auth_token == "new"


def test_legacy_top_level_config_keys_map_to_current_ones(home: Path) -> None:
    write_config(home, "dags: legacy-dags\nbasicAuthUsername: u\nisBasicAuth: true\n")
    settings = load(home)
    assert settings.dags_dir == home / "legacy-dags"
    assert settings.auth_basic_username == "u"


def test_current_config_key_wins_over_legacy_spelling(home: Path) -> None:
    write_config(home, "dags: legacy\npaths:\n  dagsDir: current\n")
    assert load(home).dags_dir == home / "current"


def test_queues_config_with_legacy_max_concurrency(home: Path) -> None:
    write_config(
        home,
        "queues:\n  enabled: false\n  config:\n"
        "    - name: etl\n      maxActiveRuns: 3\n"
        "    - name: legacy\n      maxConcurrency: 2\n",
    )
    settings = load(home)
    assert settings.queues == (QueueSettings("etl", 3), QueueSettings("legacy", 2))
    assert settings.queues_enabled is False


def test_queue_without_name_is_an_error(home: Path) -> None:
    write_config(home, "queues:\n  config:\n    - maxActiveRuns: 3\n")
    with pytest.raises(ConfigError, match=r"queues\.config\[0\]\.name"):
        load(home)


def test_dagu_compatibility_keys_are_accepted(home: Path) -> None:
    write_config(
        home,
        """\
basePath: /dagu
apiBaseURL: /api/v2
headless: true
latestStatusToday: false
cache: low
skipExamples: true
permissions: {writeDAGs: false, runDAGs: true}
permissionWriteDAGs: false
tls: {certFile: /c.pem, keyFile: /k.pem}
ui:
  navbarColor: red
  navbarTitle: Prod
  maxDashboardPageLimit: 50
  dags: {sortField: name, sortOrder: asc}
auth:
  mode: none
  oidc: {clientId: id, clientSecret: s, issuer: https://idp, scopes: [openid]}
  builtin: {admin: {username: a, password: p}, token: {secret: s, ttl: 24h}}
scheduler: {port: 8090, lockStaleThreshold: 30s, zombieDetectionInterval: 45s}
coordinator: {host: 127.0.0.1, port: 50055}
worker: {id: w1, maxActiveRuns: 10, labels: {gpu: "true"}}
peer: {insecure: true}
monitoring: {retention: 24h, interval: 5s}
remoteNodes:
  - {name: other, apiBaseURL: "http://other:8080/api/v2"}
""",
    )
    settings = load(home)
    assert settings.sources["ui.navbarTitle"] == "file"
    rows = {key: (value, source) for key, value, source in describe_settings(settings)}
    assert rows["ui.navbarTitle"] == ("(accepted, not used)", "file")


# -- env files ---------------------------------------------------------------------------------


def test_seed_environment_file_parses_and_configures(home: Path) -> None:
    env = parse_env_file(SEED_ENVIRONMENT)
    assert env == {
        "DAGU_HOST": "0.0.0.0",
        "DAGU_PORT": "8080",
        "DAGU_TZ": "America/New_York",
        "DAGU_LOG_FORMAT": "json",
    }
    settings = load(home, env)
    assert (settings.host, settings.port, settings.tz, settings.log_format) == (
        "0.0.0.0",
        8080,
        "America/New_York",
        "json",
    )


def test_committed_deploy_environment_file_parses() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "environment"
    env = parse_env_file(path.read_text(encoding="utf-8"))
    assert env["DAGU_HOST"] == "0.0.0.0" and env["DAGU_LOG_FORMAT"] == "json"


def test_env_file_syntax() -> None:
    text = r"""
# comment
; also a comment

export EXPORTED=yes
PLAIN = spaced value   # trailing comment
HASH=a#b
SINGLE='literal $HOME \n "q"'
DOUBLE="line1\nline2 \"quoted\" \\ \$HOME"
MULTI="first
second"
EMPTY=
EMPTY_QUOTED=""
CONT=abc\
def
"""
    assert parse_env_file(text) == {
        "EXPORTED": "yes",
        "PLAIN": "spaced value",
        "HASH": "a#b",
        "SINGLE": 'literal $HOME \\n "q"',
        "DOUBLE": 'line1\nline2 "quoted" \\ $HOME',
        "MULTI": "first\nsecond",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "CONT": "abcdef",
    }


def test_env_file_crlf_line_endings() -> None:
    assert parse_env_file("A=1\r\nB=2\r\n") == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NOEQUALS\n", "line 1: expected NAME=VALUE"),
        ('A=1\nB="open\n', "line 2: unterminated double quote"),
        ("A='open\n", "line 1: unterminated single quote"),
        ('A="x" junk\n', "line 1: unexpected text after the closing quote"),
    ],
)
def test_env_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DotenvError, match=message):
        parse_env_file(text)


# -- describe and `dagloop config` -------------------------------------------------------------


def test_describe_masks_secrets_and_shows_sources(home: Path) -> None:
    write_config(home, "auth:\n  basic:\n    username: admin\n    password: file-secret-pw\n")
    settings = load(
        home,
        {"DAGU_AUTH_TOKEN": "env-secret-token", "DAGU_DATABASE_URL": "postgresql://u:dbpw@h/d"},
    )
    rows = describe_settings(settings)
    text = repr(rows)
    for secret in ("file-secret-pw", "env-secret-token", "dbpw"):
        assert secret not in text
    by_key = {key: (value, source) for key, value, source in rows}
    assert by_key["auth.basic.password"] == ("*****", "file")
    assert by_key["auth.token.value"] == ("*****", "env")
    assert by_key["auth.basic.username"] == ("admin", "file")
    assert by_key["port"] == ("8080", "default")
    assert by_key["home"] == (str(home), "env")


def test_describe_leaves_unset_secrets_empty(home: Path) -> None:
    by_key = {key: value for key, value, _ in describe_settings(load(home))}
    assert by_key["auth.basic.password"] == ""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("DAGU_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DAGU_HOME", str(home))
    return monkeypatch


def test_config_command_prints_json_rows_with_sources(
    home: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "port: 9100\n")
    clean_env.setenv("DAGU_HOST", "0.0.0.0")
    clean_env.setenv("DAGU_AUTH_BASIC_PASSWORD", "hunter2-secret")
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out
    rows = {row["key"]: row for row in json.loads(out)}
    assert rows["port"] == {"key": "port", "value": "9100", "source": "file"}
    assert rows["host"]["source"] == "env"
    assert rows["auth.basic.password"]["value"] == "*****"
    assert rows["logFormat"] == {"key": "logFormat", "value": "text", "source": "default"}


def test_config_command_table_and_explicit_file(
    home: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("logFormat: json\n")
    assert main(["config", "-c", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    assert ["logFormat", "json", "file"] in [line.split() for line in lines]


def test_config_command_reports_errors_on_stderr(
    home: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "paths:\n  dagDir: x\n")
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert "config.yaml: unknown key 'paths.dagDir'" in err


def test_cli_overrides_accept_path_objects(home: Path, tmp_path: Path) -> None:
    settings = load(home, overrides={"home": tmp_path / "h2", "paths.logDir": tmp_path / "l"})
    assert settings.home == tmp_path / "h2"
    assert settings.log_dir == tmp_path / "l"
    assert settings.dags_dir == tmp_path / "h2" / "dags"
    assert (settings.sources["home"], settings.sources["paths.logDir"]) == ("cli", "cli")
