"""Configuration: `config.yaml` + `DAGU_*` environment + CLI overrides -> one frozen `Settings`.

Owns the table of configuration keys (Dagu 1.30's, reference §5, plus dagloop's own
`controller.*` and `database.url`), their environment names, defaults and parsing. Pure: the only
I/O is reading the config file it is asked to read (and the zone database to check `tz`).
Called by every `dagloop` command at start-up, and by `dagloop config` to show where each value
came from. (Env files are parsed by `model.dotenv`.)

Precedence, highest first: CLI overrides > `DAGU_*` environment > config file > defaults.

Keys accepted for Dagu compatibility but not acted on (a config written for Dagu loads unchanged):
`basePath`, `apiBaseURL`, `headless`, `latestStatusToday`, `cache`, `skipExamples`,
`paths.{suspendFlagsDir,adminLogsDir,dagRunsDir,procDir,queueDir,serviceRegistryDir,usersDir,
executable}`, `auth.mode`, `auth.oidc.*`, `auth.builtin.*`, `permissions.*`, `tls.*`, `ui.*`,
`scheduler.*`, `coordinator.*`, `worker.*`, `peer.*`, `monitoring.*`, `remoteNodes`, and the legacy
top-level spellings (`dags`, `logDir`, `basicAuthUsername`, `permissionWriteDAGs`, ...). Any other
key is a `ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import os
import types
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "SECRET_MASK",
    "ConfigError",
    "QueueSettings",
    "Settings",
    "describe_settings",
    "load_settings",
]

SECRET_MASK = "*****"
_MIB = 1024 * 1024


class ConfigError(ValueError):
    """An invalid configuration value or file; the message names the key and its source."""


@dataclass(frozen=True)
class QueueSettings:
    """One global queue (`queues.config[]`): at most `max_active_runs` runs of it at once."""

    name: str
    max_active_runs: int


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Paths are absolute; durations are seconds."""

    home: Path
    dags_dir: Path
    log_dir: Path
    data_dir: Path
    base_config: Path
    host: str = "127.0.0.1"
    port: int = 8080
    tz: str | None = None  # None: the host's local zone
    log_format: str = "text"  # "text" | "json"
    debug: bool = False
    metrics_public: bool = False  # `metrics: public` serves /metrics without auth
    auth_basic_username: str | None = None
    auth_basic_password: str | None = None
    auth_token: str | None = None
    default_shell: str | None = None  # None: $SHELL, else sh (decided by the runner)
    work_dir: Path | None = None  # None: the DAG file's directory
    queues: tuple[QueueSettings, ...] = ()
    queues_enabled: bool = True
    shutdown_grace_seconds: float = 20.0
    resync_interval_seconds: float = 2.0
    heartbeat_interval_seconds: float = 2.0
    heartbeat_timeout_seconds: float = 10.0
    max_dag_file_bytes: int = _MIB
    max_step_log_bytes: int = 50 * _MIB
    secret_patterns: tuple[str, ...] = ("*PASSWORD*", "*SECRET*", "*TOKEN*", "*KEY*")
    database_url: str | None = None  # None: SQLite at `db_path`
    # how long `enqueue`, `stop`, `start`… wait for an unreachable database before failing
    database_wait_seconds: float = 30.0
    # how long a runner whose steps have all ended keeps retrying its refused writes before
    # it exits and leaves them in its journal, for whoever reaps the run
    runner_buffer_seconds: float = 3600.0
    # local: the controller runs runs itself (DAGs with workerSelector still go to workers);
    # workers: every run goes to `dagloop worker` processes
    dispatch: str = "local"
    worker_id: str | None = None  # None: <host>@<pid>
    worker_max_active_runs: int = 100
    worker_labels: object = (
        None  # "k=v,k2=v2" or a map (config file); see controller.cluster.worker
    )
    # git_sync (Dagu 2.6's settings, pull only; controller.gitsync): the DAGs directory becomes
    # a symlink to a checkout of `gitsync_branch` of `gitsync_repository`
    gitsync_enabled: bool = False
    gitsync_repository: str | None = None
    gitsync_branch: str = "main"
    gitsync_path: str = ""  # the subdirectory of the repository holding the DAGs
    gitsync_auth_type: str = "token"  # token | ssh
    gitsync_auth_token: str | None = None
    gitsync_auth_ssh_key_path: Path | None = None
    gitsync_autosync_enabled: bool = True
    gitsync_autosync_on_startup: bool = True
    gitsync_autosync_interval_seconds: float = 300.0
    # keep-last-good: an invalid DAG file keeps its last valid version scheduled; stop: it is
    # not scheduled until fixed (Dagu's behaviour)
    on_invalid_dag: str = "keep-last-good"
    config_file: Path | None = None  # the config file that was read; None if there was none
    # dotted key -> "default" | "file" | "env" | "cli"; for `dagloop config`
    sources: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, hash=False
    )

    @property
    def db_path(self) -> Path:
        """The embedded SQLite database file."""
        return self.data_dir / "dagloop.db"


# --------------------------------------------------------------------------------------------
# The key table

_Kind = Literal["str", "int", "float", "bool", "path", "enum", "queues", "list", "any"]


@dataclass(frozen=True)
class _Key:
    key: str  # dotted config.yaml key
    envs: tuple[str, ...]  # env names, preferred first (later ones are legacy aliases)
    kind: _Kind
    field: str | None  # Settings field it feeds; None = accepted for compatibility, not acted on
    default: object = None
    choices: tuple[str, ...] = ()
    secret: bool = False


def _k(
    key: str,
    envs: str | tuple[str, ...] = (),
    kind: _Kind = "str",
    field_: str | None = None,
    default: object = None,
    *,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> _Key:
    env_names = (envs,) if isinstance(envs, str) else envs
    return _Key(key, env_names, kind, field_, default, choices, secret)


_KEYS: tuple[_Key, ...] = (
    # acted on
    _k("host", ("DAGU_HOST", "DAGU__ADMIN_HOST"), "str", "host", "127.0.0.1"),
    _k("port", ("DAGU_PORT", "DAGU__ADMIN_PORT"), "int", "port", 8080),
    _k("tz", "DAGU_TZ", "str", "tz"),
    _k("logFormat", "DAGU_LOG_FORMAT", "enum", "log_format", "text", choices=("text", "json")),
    _k("debug", "DAGU_DEBUG", "bool", "debug", False),
    _k(
        "metrics",
        "DAGU_SERVER_METRICS",
        "enum",
        "metrics_public",
        "private",
        choices=("public", "private"),
    ),
    _k("defaultShell", "DAGU_DEFAULT_SHELL", "str", "default_shell"),
    _k("workDir", "DAGU_WORK_DIR", "path", "work_dir"),
    _k("paths.dagsDir", ("DAGU_DAGS_DIR", "DAGU_DAGS"), "path", "dags_dir"),
    _k("paths.logDir", "DAGU_LOG_DIR", "path", "log_dir"),
    _k("paths.dataDir", ("DAGU_DATA_DIR", "DAGU__DATA"), "path", "data_dir"),
    _k("paths.baseConfig", "DAGU_BASE_CONFIG", "path", "base_config"),
    _k(
        "auth.basic.username",
        ("DAGU_AUTH_BASIC_USERNAME", "DAGU_BASICAUTH_USERNAME"),
        "str",
        "auth_basic_username",
    ),
    _k(
        "auth.basic.password",
        ("DAGU_AUTH_BASIC_PASSWORD", "DAGU_BASICAUTH_PASSWORD"),
        "str",
        "auth_basic_password",
        secret=True,
    ),
    _k("auth.token.value", ("DAGU_AUTH_TOKEN", "DAGU_AUTHTOKEN"), "str", "auth_token", secret=True),
    _k("queues.enabled", "DAGU_QUEUE_ENABLED", "bool", "queues_enabled", True),
    _k("queues.config", (), "queues", "queues", ()),
    _k(
        "controller.shutdownGraceSeconds",
        "DAGU_CONTROLLER_SHUTDOWN_GRACE_SECONDS",
        "float",
        "shutdown_grace_seconds",
        20.0,
    ),
    _k(
        "controller.resyncIntervalSeconds",
        "DAGU_CONTROLLER_RESYNC_INTERVAL_SECONDS",
        "float",
        "resync_interval_seconds",
        2.0,
    ),
    _k(
        "controller.heartbeatIntervalSeconds",
        "DAGU_CONTROLLER_HEARTBEAT_INTERVAL_SECONDS",
        "float",
        "heartbeat_interval_seconds",
        2.0,
    ),
    _k(
        "controller.heartbeatTimeoutSeconds",
        "DAGU_CONTROLLER_HEARTBEAT_TIMEOUT_SECONDS",
        "float",
        "heartbeat_timeout_seconds",
        10.0,
    ),
    _k(
        "controller.maxDagFileBytes",
        "DAGU_CONTROLLER_MAX_DAG_FILE_BYTES",
        "int",
        "max_dag_file_bytes",
        _MIB,
    ),
    _k(
        "controller.maxStepLogBytes",
        "DAGU_CONTROLLER_MAX_STEP_LOG_BYTES",
        "int",
        "max_step_log_bytes",
        50 * _MIB,
    ),
    _k(
        "controller.secretPatterns",
        "DAGU_CONTROLLER_SECRET_PATTERNS",
        "list",
        "secret_patterns",
        ("*PASSWORD*", "*SECRET*", "*TOKEN*", "*KEY*"),
    ),
    _k("database.url", "DAGU_DATABASE_URL", "str", "database_url", secret=True),
    _k(
        "database.waitSeconds",
        "DAGU_DATABASE_WAIT_SECONDS",
        "float",
        "database_wait_seconds",
        30.0,
    ),
    _k(
        "database.runnerBufferSeconds",
        "DAGU_DATABASE_RUNNER_BUFFER_SECONDS",
        "float",
        "runner_buffer_seconds",
        3600.0,
    ),
    _k(
        "scheduler.dispatch",
        "DAGU_SCHEDULER_DISPATCH",
        "enum",
        "dispatch",
        "local",
        choices=("local", "workers"),
    ),
    _k("worker.id", "DAGU_WORKER_ID", "str", "worker_id"),
    _k("worker.maxActiveRuns", "DAGU_WORKER_MAX_ACTIVE_RUNS", "int", "worker_max_active_runs", 100),
    _k("worker.labels", "DAGU_WORKER_LABELS", "any", "worker_labels"),
    _k(
        "controller.onInvalidDag",
        "DAGU_CONTROLLER_ON_INVALID_DAG",
        "enum",
        "on_invalid_dag",
        "keep-last-good",
        choices=("keep-last-good", "stop"),
    ),
    _k("git_sync.enabled", "DAGU_GITSYNC_ENABLED", "bool", "gitsync_enabled", False),
    _k("git_sync.repository", "DAGU_GITSYNC_REPOSITORY", "str", "gitsync_repository"),
    _k("git_sync.branch", "DAGU_GITSYNC_BRANCH", "str", "gitsync_branch", "main"),
    _k("git_sync.path", "DAGU_GITSYNC_PATH", "str", "gitsync_path", ""),
    _k(
        "git_sync.auth.type",
        "DAGU_GITSYNC_AUTH_TYPE",
        "enum",
        "gitsync_auth_type",
        "token",
        choices=("token", "ssh"),
    ),
    _k(
        "git_sync.auth.token",
        "DAGU_GITSYNC_AUTH_TOKEN",
        "str",
        "gitsync_auth_token",
        secret=True,
    ),
    _k(
        "git_sync.auth.ssh_key_path",
        "DAGU_GITSYNC_AUTH_SSH_KEY_PATH",
        "path",
        "gitsync_auth_ssh_key_path",
    ),
    _k(
        "git_sync.auto_sync.enabled",
        "DAGU_GITSYNC_AUTOSYNC_ENABLED",
        "bool",
        "gitsync_autosync_enabled",
        True,
    ),
    _k(
        "git_sync.auto_sync.on_startup",
        "DAGU_GITSYNC_AUTOSYNC_ON_STARTUP",
        "bool",
        "gitsync_autosync_on_startup",
        True,
    ),
    _k(
        "git_sync.auto_sync.interval",
        "DAGU_GITSYNC_AUTOSYNC_INTERVAL",
        "float",
        "gitsync_autosync_interval_seconds",
        300.0,
    ),
    # accepted for Dagu compatibility, not acted on
    _k("basePath", "DAGU_BASE_PATH"),
    _k("apiBaseURL", "DAGU_API_BASE_URL"),
    _k("headless", "DAGU_HEADLESS", "bool"),
    _k("latestStatusToday", "DAGU_LATEST_STATUS_TODAY", "bool"),
    _k("cache", "DAGU_CACHE", "enum", choices=("low", "normal", "high")),
    _k("skipExamples", "DAGU_SKIP_EXAMPLES", "bool"),
    _k("paths.suspendFlagsDir", "DAGU_SUSPEND_FLAGS_DIR"),
    _k("paths.adminLogsDir", ("DAGU_ADMIN_LOG_DIR", "DAGU__ADMIN_LOGS_DIR")),
    _k("paths.dagRunsDir", "DAGU_DAG_RUNS_DIR"),
    _k("paths.procDir", "DAGU_PROC_DIR"),
    _k("paths.queueDir", "DAGU_QUEUE_DIR"),
    _k("paths.serviceRegistryDir", "DAGU_SERVICE_REGISTRY_DIR"),
    _k("paths.usersDir", "DAGU_USERS_DIR"),
    _k("paths.executable", "DAGU_EXECUTABLE"),
    _k("auth.mode", "DAGU_AUTH_MODE", "enum", choices=("none", "builtin", "oidc")),
    _k("auth.oidc.clientId", "DAGU_AUTH_OIDC_CLIENT_ID"),
    _k("auth.oidc.clientSecret", "DAGU_AUTH_OIDC_CLIENT_SECRET", secret=True),
    _k("auth.oidc.clientUrl", "DAGU_AUTH_OIDC_CLIENT_URL"),
    _k("auth.oidc.issuer", "DAGU_AUTH_OIDC_ISSUER"),
    _k("auth.oidc.scopes", "DAGU_AUTH_OIDC_SCOPES", "any"),
    _k("auth.oidc.whitelist", "DAGU_AUTH_OIDC_WHITELIST", "any"),
    _k("auth.builtin.admin.username", "DAGU_AUTH_ADMIN_USERNAME"),
    _k("auth.builtin.admin.password", "DAGU_AUTH_ADMIN_PASSWORD", secret=True),
    _k("auth.builtin.token.secret", "DAGU_AUTH_TOKEN_SECRET", secret=True),
    _k("auth.builtin.token.ttl", "DAGU_AUTH_TOKEN_TTL"),
    _k("permissions.writeDAGs", (), "bool"),
    _k("permissions.runDAGs", (), "bool"),
    _k("tls.certFile", "DAGU_CERT_FILE"),
    _k("tls.keyFile", "DAGU_KEY_FILE"),
    _k("tls.caFile"),
    _k("ui.navbarColor", ("DAGU_UI_NAVBAR_COLOR", "DAGU_NAVBAR_COLOR")),
    _k("ui.navbarTitle", ("DAGU_UI_NAVBAR_TITLE", "DAGU_NAVBAR_TITLE")),
    _k("ui.logEncodingCharset", ("DAGU_UI_LOG_ENCODING_CHARSET", "DAGU_LOG_ENCODING_CHARSET")),
    _k(
        "ui.maxDashboardPageLimit",
        ("DAGU_UI_MAX_DASHBOARD_PAGE_LIMIT", "DAGU_MAX_DASHBOARD_PAGE_LIMIT"),
        "int",
    ),
    _k("ui.dags.sortField", "DAGU_UI_DAGS_SORT_FIELD"),
    _k("ui.dags.sortOrder", "DAGU_UI_DAGS_SORT_ORDER"),
    _k("scheduler.port", "DAGU_SCHEDULER_PORT", "int"),
    _k("scheduler.lockStaleThreshold", "DAGU_SCHEDULER_LOCK_STALE_THRESHOLD"),
    _k("scheduler.lockRetryInterval", "DAGU_SCHEDULER_LOCK_RETRY_INTERVAL"),
    _k("scheduler.zombieDetectionInterval", "DAGU_SCHEDULER_ZOMBIE_DETECTION_INTERVAL"),
    _k("coordinator.host", "DAGU_COORDINATOR_HOST"),
    _k("coordinator.advertise", "DAGU_COORDINATOR_ADVERTISE"),
    _k("coordinator.port", "DAGU_COORDINATOR_PORT", "int"),
    _k("peer.certFile", "DAGU_PEER_CERT_FILE"),
    _k("peer.keyFile", "DAGU_PEER_KEY_FILE"),
    _k("peer.clientCaFile", "DAGU_PEER_CLIENT_CA_FILE"),
    _k("peer.skipTlsVerify", "DAGU_PEER_SKIP_TLS_VERIFY", "bool"),
    _k("peer.insecure", "DAGU_PEER_INSECURE", "bool"),
    _k("monitoring.retention", "DAGU_MONITORING_RETENTION"),
    _k("monitoring.interval", "DAGU_MONITORING_INTERVAL"),
    _k("remoteNodes", (), "any"),
)

_BY_KEY: dict[str, _Key] = {k.key: k for k in _KEYS}
_BY_FIELD: dict[str, _Key] = {k.field: k for k in _KEYS if k.field is not None}

# Dagu's older top-level spellings in config.yaml -> the current key. The current key wins.
_LEGACY_FILE_KEYS: dict[str, str] = {
    "dags": "paths.dagsDir",
    "dagsDir": "paths.dagsDir",
    "logDir": "paths.logDir",
    "dataDir": "paths.dataDir",
    "baseConfig": "paths.baseConfig",
    "suspendFlagsDir": "paths.suspendFlagsDir",
    "adminLogsDir": "paths.adminLogsDir",
    "executable": "paths.executable",
    "basicAuthUsername": "auth.basic.username",
    "basicAuthPassword": "auth.basic.password",
    "authToken": "auth.token.value",
    "navbarColor": "ui.navbarColor",
    "navbarTitle": "ui.navbarTitle",
    "logEncodingCharset": "ui.logEncodingCharset",
    "maxDashboardPageLimit": "ui.maxDashboardPageLimit",
    "permissionWriteDAGs": "permissions.writeDAGs",
    "permissionRunDAGs": "permissions.runDAGs",
}
# Legacy switches whose meaning is "enabled when set" in 1.30; accepted, ignored.
_LEGACY_IGNORED: frozenset[str] = frozenset({"isBasicAuth", "isAuthToken"})

_QUEUE_ITEM_KEYS: frozenset[str] = frozenset({"name", "maxActiveRuns", "maxConcurrency"})
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


# --------------------------------------------------------------------------------------------
# Loading


def _default_home(env: Mapping[str, str]) -> Path:
    user_home = Path(env.get("HOME") or Path.home())
    legacy = user_home / ".dagu"
    if legacy.is_dir():
        return legacy
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else user_home / ".config"
    return base / "dagu"


def _flatten(
    data: Mapping[str, Any], origin: str, prefix: str = ""
) -> dict[str, tuple[object, str]]:
    """config.yaml mapping -> {dotted key: (value, where)}; unknown keys raise ConfigError."""
    out: dict[str, tuple[object, str]] = {}
    for raw_name, value in data.items():
        name = str(raw_name)
        dotted = f"{prefix}{name}"
        if not prefix and name in _LEGACY_IGNORED:
            continue
        if not prefix and name in _LEGACY_FILE_KEYS:
            out.setdefault(f"legacy:{_LEGACY_FILE_KEYS[name]}", (value, f"{origin}: {name}"))
            continue
        if dotted in _BY_KEY:
            out[dotted] = (value, f"{origin}: {dotted}")
            continue
        if any(k.startswith(dotted + ".") for k in _BY_KEY):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: key '{dotted}' must be a mapping, got {value!r}")
            out.update(_flatten(value, origin, dotted + "."))
            continue
        raise ConfigError(f"{origin}: unknown key '{dotted}'")
    return out


def _read_config_file(path: Path) -> dict[str, tuple[object, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    import yaml  # only when a config file exists: keeps ~15 ms off `dagloop start`

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping")
    flat = _flatten(data, str(path))
    # legacy spellings fill in only where the current key is absent
    for name in [n for n in flat if n.startswith("legacy:")]:
        value = flat.pop(name)
        flat.setdefault(name.removeprefix("legacy:"), value)
    return flat


def _as_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ConfigError(f"{where}: {value!r} is not a boolean (use true/false, yes/no or 1/0)")


def _as_int(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: {value!r} is not an integer")


def _as_float(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: {value!r} is not a number")


def _as_str(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[no-any-return]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: {value!r} is not a string")


def _as_queues(value: object, where: str) -> tuple[QueueSettings, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of {{name, maxActiveRuns}}, got {value!r}")
    queues: list[QueueSettings] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at}: must be a mapping with name and maxActiveRuns")
        for extra in sorted(set(map(str, item)) - _QUEUE_ITEM_KEYS):
            raise ConfigError(f"{at}: unknown key '{extra}'")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{at}.name: a non-empty name is required")
        if name in seen:
            raise ConfigError(f"{at}.name: duplicate queue {name!r}")
        seen.add(name)
        raw_max = item.get("maxActiveRuns", item.get("maxConcurrency", 1))
        max_active = _as_int(raw_max, f"{at}.maxActiveRuns")
        if max_active < 1:
            raise ConfigError(f"{at}.maxActiveRuns: must be at least 1, got {max_active}")
        queues.append(QueueSettings(name=name, max_active_runs=max_active))
    return tuple(queues)


def _as_list(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: {value!r} is not a list of strings")


def _convert(spec: _Key, value: object, where: str, base_dir: Path) -> object:
    """Parse one raw value (YAML scalar, env string or CLI object) to the Settings type."""
    if spec.kind == "any":
        return value
    if spec.kind == "queues":
        return _as_queues(value, where)
    if spec.kind == "list":
        return _as_list(value, where)
    if spec.kind == "bool":
        return _as_bool(value, where)
    if spec.kind == "int":
        return _as_int(value, where)
    if spec.kind == "float":
        number = _as_float(value, where)
        if number < 0:
            raise ConfigError(f"{where}: must not be negative, got {number}")
        return number
    text = _as_str(value, where)
    if spec.kind == "enum":
        low = text.strip().lower()
        if low not in spec.choices:
            raise ConfigError(f"{where}: {text!r} is not one of {', '.join(spec.choices)}")
        return low
    if spec.kind == "path":
        if not text:
            raise ConfigError(f"{where}: empty path")
        path = Path(text).expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()
    return text


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build the effective `Settings`.

    `env` defaults to `os.environ`. `overrides` holds CLI values by dotted config key (for example
    `{"port": 9000, "paths.dagsDir": "dags"}`; `None` values are ignored) or `"home"`.
    A missing default config file is fine; a missing file named by `config_file` or `DAGU_CONFIG`
    is an error. Raises `ConfigError` for unknown keys and bad values.
    """
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cwd = Path.cwd()
    sources: dict[str, str] = {}
    home = _resolve_home(overrides.pop("home", None), env, cwd, sources)
    unknown = sorted(set(overrides) - set(_BY_KEY))
    if unknown:
        raise ConfigError(f"cli: unknown key '{unknown[0]}'")
    path, file_values = _read_chosen_config_file(config_file, env, home, cwd, sources)
    file_dir = path.parent if path is not None else home
    values = _layered_values(overrides, env, file_values, file_dir, cwd, sources)
    _check_values(values, sources)
    _derive_values(values, home)
    return Settings(
        home=home,
        config_file=path,
        sources=types.MappingProxyType(sources),
        **values,  # type: ignore[arg-type]
    )


def _resolve_home(
    override: object, env: Mapping[str, str], cwd: Path, sources: dict[str, str]
) -> Path:
    """DAGU_HOME: cli > env > legacy ~/.dagu > ~/.config/dagu (relative to `cwd`)."""
    if override is not None:
        sources["home"] = "cli"
        return (cwd / Path(_as_str(override, "cli: home")).expanduser()).resolve()
    if env.get("DAGU_HOME"):
        sources["home"] = "env"
        return (cwd / Path(env["DAGU_HOME"]).expanduser()).resolve()
    sources["home"] = "default"
    return _default_home(env).resolve()


def _read_chosen_config_file(
    config_file: Path | None,
    env: Mapping[str, str],
    home: Path,
    cwd: Path,
    sources: dict[str, str],
) -> tuple[Path | None, dict[str, tuple[object, str]]]:
    """The config file in effect (None when the default one does not exist) and its values:
    `config_file` (cli) > `DAGU_CONFIG` (env) — both must exist — > `<home>/config.yaml`."""
    explicit = config_file if config_file is not None else env.get("DAGU_CONFIG") or None
    if explicit is not None:
        path = (cwd / Path(explicit).expanduser()).resolve()
        sources["configFile"] = "cli" if config_file is not None else "env"
        return path, _read_config_file(path)
    sources["configFile"] = "default"
    path = home / "config.yaml"
    if path.is_file():
        return path, _read_config_file(path)
    return None, {}


def _layered_values(
    overrides: Mapping[str, object],
    env: Mapping[str, str],
    file_values: Mapping[str, tuple[object, str]],
    file_dir: Path,
    cwd: Path,
    sources: dict[str, str],
) -> dict[str, object]:
    """Each key's value by precedence (cli > env > file > default), converted; relative paths
    are taken from the working directory for cli and env values, from the file's directory for
    file values. Records each key's source in `sources`."""
    values: dict[str, object] = {}
    for spec in _KEYS:
        if spec.key in overrides:
            raw, where, base, src = overrides[spec.key], f"cli: {spec.key}", cwd, "cli"
        elif env_name := next((e for e in spec.envs if env.get(e, "") != ""), None):
            raw, where, base, src = env[env_name], f"env {env_name}", cwd, "env"
        elif spec.key in file_values:
            raw, where = file_values[spec.key]
            base, src = file_dir, "file"
        else:
            sources[spec.key] = "default"
            if spec.field is not None:
                values[spec.field] = spec.default
            continue
        converted = _convert(spec, raw, where, base)
        sources[spec.key] = src
        if spec.field is not None:
            values[spec.field] = converted
    return values


def _check_values(values: dict[str, object], sources: Mapping[str, str]) -> None:
    """The checks across one value that its converter cannot make (a known time zone, a port
    in range, positive limits); `tz: ""` becomes None. Raises `ConfigError` naming the source."""
    tz = values.get("tz")
    if isinstance(tz, str):
        if not tz:
            values["tz"] = None
        else:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"tz ({sources['tz']}): unknown time zone {tz!r}") from exc
    if values["gitsync_enabled"] and not values["gitsync_repository"]:
        src = sources["git_sync.enabled"]
        raise ConfigError(f"git_sync.enabled ({src}): git_sync.repository is required")
    port = values["port"]
    assert isinstance(port, int)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port ({sources['port']}): {port} is out of range 0-65535")
    for name in ("max_dag_file_bytes", "max_step_log_bytes"):
        limit = values[name]
        assert isinstance(limit, int)
        if limit < 1:
            key = _BY_FIELD[name].key
            raise ConfigError(f"{key} ({sources[key]}): must be positive, got {limit}")


def _derive_values(values: dict[str, object], home: Path) -> None:
    """Fields computed from others: `metrics_public`, and the directories left unset, which
    default to their place under `home`."""
    values["metrics_public"] = values["metrics_public"] == "public"
    for field_name, sub in (
        ("dags_dir", "dags"),
        ("log_dir", "logs"),
        ("data_dir", "data"),
        ("base_config", "base.yaml"),
    ):
        if values[field_name] is None:
            values[field_name] = home / sub


# --------------------------------------------------------------------------------------------
# Rendering


def _render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if all(isinstance(v, QueueSettings) for v in value):
            return ", ".join(f"{q.name}={q.max_active_runs}" for q in value)
        return ", ".join(str(v) for v in value)
    return str(value)


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """Rows of (dotted key, value, source) for `dagloop config`; secrets shown as `*****`.

    Lists `home`, the config file, every key dagloop acts on, and those compatibility-only keys
    that were set (value shown as `(accepted, not used)`).
    """
    src = settings.sources
    rows: list[tuple[str, str, str]] = [
        ("home", str(settings.home), src.get("home", "default")),
        ("configFile", _render(settings.config_file), src.get("configFile", "default")),
    ]
    for spec in _KEYS:
        source = src.get(spec.key, "default")
        if spec.field is None:
            if source != "default":
                rows.append((spec.key, "(accepted, not used)", source))
            continue
        value: object = getattr(settings, spec.field)
        if spec.field == "metrics_public":
            value = "public" if value else "private"
        text = _render(value)
        if text and spec.secret:
            text = SECRET_MASK
        rows.append((spec.key, text, source))
    return rows
