"""Pydantic models of a Dagu 1.30 DAG file, accepting every YAML form Dagu accepts.

Each field takes the user's shape (string, list or map) and normalises it to one canonical
form, so the runner and the controller never look at YAML shapes again. Field names are
Dagu's camelCase keys (aliases); attribute names are snake_case. Unknown keys are rejected.

Fields of features this engine does not run (docker, ssh, llm, otel, ...) are parsed so that
the loader can refuse them by name (`model.loader.unsupported_fields`); every field's status is
in the audit table of docs/compatibility.md.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUseDefault

from model.params import PARAM_NAME
from model.params import RUN_ID_MAX_LENGTH as RUN_ID_MAX_LENGTH
from model.params import RUN_ID_PATTERN as RUN_ID_PATTERN
from model.specbase import (
    HandlerOnBehaviour,
    StepBehaviour,
)
from model.specbase import split_cron as split_cron

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]+$")
NAME_MAX_LENGTH = 40
STEP_ID_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]*$")  # Dagu 1.30.2's step id rule
DEFAULT_MAX_OUTPUT_SIZE = 1024 * 1024
DEFAULT_MAX_CLEANUP_SECONDS = 5
DEFAULT_HIST_RETENTION_DAYS = 30


SIGNALS = frozenset(
    "SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 SIGSEGV "
    "SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD SIGCONT SIGSTOP SIGTSTP SIGTTIN "
    "SIGTTOU SIGURG SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO SIGPWR SIGSYS".split()
)


def validate_name(name: str) -> str | None:
    """What is wrong with a DAG name, or None."""
    if not NAME_PATTERN.match(name):
        return f"invalid name {name!r}: only letters, digits, '_', '.' and '-' are allowed"
    if len(name) > NAME_MAX_LENGTH:
        return f"invalid name {name!r}: longer than {NAME_MAX_LENGTH} characters"
    return None


@functools.lru_cache(maxsize=4096)  # pure, and croniter's parse is the slowest part of a load
def check_cron(expression: str) -> str | None:
    """What is wrong with a cron expression (5 fields, optional CRON_TZ=), or None."""
    zone, expr = split_cron(expression)
    if zone is not None:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(zone)
        except (ValueError, KeyError, OSError):
            return f"unknown time zone {zone!r} in {expression!r}"
    if expr.startswith("@"):
        return (
            f"invalid cron expression {expression!r}: descriptors such as @daily are not accepted"
        )
    fields = expr.split()
    if len(fields) != 5:
        return f"invalid cron expression {expression!r}: expected 5 fields, got {len(fields)}"
    from croniter import croniter

    if not croniter.is_valid(expr):
        return f"invalid cron expression {expression!r}"
    return None


class _Spec(BaseModel):
    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


def fold_keys(value: Any, model: type[BaseModel], *legacy: str) -> Any:
    """`value` with keys spelled in another case renamed to the field's own key.

    Dagu 1.30.2 decodes the DAG, its steps, handlers, policies, conditions and mail settings
    with mapstructure, which matches keys case-insensitively (`MaxActiveRuns`, `retryPolicy:
    {LIMIT: 2}`); `continueOn`, `output`, `parallel`, `schedule` and `executor` have their own
    decoders and stay case-sensitive. `legacy` names deprecated keys handled by the model
    (`dir`, `run`, ...). A key also given in its own spelling is left alone and then refused as
    unknown: which of the two Dagu would take is not defined.
    """
    if not isinstance(value, dict):
        return value
    keys = [field.alias or name for name, field in model.model_fields.items()]
    canonical = {key.lower(): key for key in (*keys, *legacy)}
    out: dict[Any, Any] = {}
    for key, item in value.items():
        name = canonical.get(key.lower(), key) if isinstance(key, str) else key
        out[key if name in value and name != key else name] = item
    return out


def _scalar_text(value: Any) -> str:
    """YAML scalars as Dagu sees them: booleans lower-case, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, datetime.date):  # YAML reads 2024-01-01 as a date; Dagu keeps the text
        return value.isoformat()
    raise ValueError(f"expected a string, got {_yaml_kind(value)}")


def _yaml_kind(value: Any) -> str:
    """The YAML word for a Python value's type, for error messages."""
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


_LOG_OUTPUTS = ("separate", "merged")


def _log_output(value: Any) -> str | None:
    """`logOutput` as Dagu 1.30.2 reads it: text, trimmed and case-insensitive; "" is
    `separate` (so a step's `logOutput: ""` overrides a merged DAG); null is not set."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"logOutput must be a string, got {_yaml_kind(value)}")
    mode = value.strip().lower() or "separate"
    if mode not in _LOG_OUTPUTS:
        raise ValueError(f"invalid logOutput value: \"{value}\" (must be 'separate' or 'merged')")
    return mode


def _str_list(value: Any, *, what: str = "a string or a list of strings") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, list | dict):
                raise ValueError(f"expected {what}")
            out.append(_scalar_text(item))
        return out
    raise ValueError(f"expected {what}")


def _int_list(value: Any) -> list[int]:
    """`continueOn.exitCode`: one code or a list; numbers or numeric text (Dagu parses both)."""
    if value is None:
        raise ValueError("expected an exit code or a list of exit codes, got null")
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError("expected an exit code (integer)")
        try:
            out.append(int(item))
        except (TypeError, ValueError):
            raise ValueError(f"expected an exit code (integer), got {item!r}") from None
    return out


def _exit_code_list(value: Any) -> list[int]:
    """`retryPolicy`/`repeatPolicy.exitCode`: Dagu 1.30.2 decodes a Go []int, so only a list of
    numbers (fractions truncated) is accepted; one bare code or text is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of exit codes, got {_yaml_kind(value)}")
    codes = []
    for item in value:
        try:
            codes.append(_go_int(item))
        except (ValueError, PydanticUseDefault):
            raise ValueError(f"expected an exit code (integer), got {item!r}") from None
    return codes


# Text that a number field may hold: evaluated at run time to a number.
_RUNTIME_NUMBER = re.compile(r"\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|`[^`]+`")
_INTEGER_TEXT = re.compile(r"^\s*[+-]?[0-9]+\s*$")


def _go_int(value: Any) -> Any:
    """A number where Dagu 1.30.2 decodes a Go int (mapstructure, not weakly typed).

    Null means the field's default and a fraction is truncated toward zero, as in Dagu; text
    (even "5") and booleans are refused, as `dagu validate` refuses them.
    """
    if value is None:
        raise PydanticUseDefault()
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({_scalar_text(value)})")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a number, got {value}")
        return int(value)
    if isinstance(value, str):
        raise ValueError(f"expected a number, got text {value!r}")
    return value


def check_runtime_number(value: Any) -> Any:
    """A number field that may hold text evaluated at run time (`retryPolicy.limit`, ...).

    Dagu 1.30.2 accepts any text there and fails only when the run evaluates it; dagloop
    accepts only text that can become a number: integer digits, a `${VAR}`/`$VAR` reference
    or a backtick command. Anything else (`many`, `1.5`) is refused at validate time.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({_scalar_text(value)})")
    if not isinstance(value, str):
        return value
    if _RUNTIME_NUMBER.search(value):
        return value
    if _INTEGER_TEXT.match(value):
        if int(value) < 0:
            raise ValueError("must not be negative")
        return value
    raise ValueError(
        f"expected a number, a ${{...}} reference or a `command`, got {value!r} "
        "(not supported by dagloop: Dagu accepts it and fails at run time)"
    )


# An int field as Dagu decodes it; strict below so that pydantic does not read "5" or True.
GoInt = Annotated[int, BeforeValidator(_go_int), Field(strict=True)]


def _go_bool(value: Any) -> Any:
    """Null is the default; anything but true or false (even "yes") is refused, as Dagu does."""
    if value is None:
        raise PydanticUseDefault()
    return value


GoBool = Annotated[bool, BeforeValidator(_go_bool), Field(strict=True)]


def _merge_precondition_alias(value: dict[str, Any]) -> None:
    """Fold `precondition` into `preconditions`; with both, Dagu 1.30.2 applies every
    condition of the two (each may be one condition or a list)."""
    if "precondition" not in value:
        return
    alias = value.pop("precondition")
    if "preconditions" not in value:
        value["preconditions"] = alias
        return

    def as_list(conditions: Any) -> list[Any]:
        return list(conditions) if isinstance(conditions, list) else [conditions]

    value["preconditions"] = [*as_list(value["preconditions"]), *as_list(alias)]


def _go_text(value: Any) -> str:
    """A Go string field: text only (Dagu refuses `description: 5`); a YAML date keeps its text."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise ValueError(f"expected a string, got {_yaml_kind(value)} {value!r}")


def parse_env_entries(value: Any) -> list[tuple[str, str]]:
    """`env` in any of Dagu's forms (map, list of maps, list of ``K=V``) as ordered pairs."""
    if value is None:
        return []
    pairs: list[tuple[str, str]] = []
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise ValueError("expected a map, a list of maps or a list of 'KEY=value' strings")
    for item in items:
        if isinstance(item, dict):
            for key, val in item.items():
                if isinstance(val, dict | list):
                    raise ValueError(f"value of {key!r} must be a scalar")
                pairs.append((str(key), _scalar_text(val)))
        elif isinstance(item, str):
            key, sep, val = item.partition("=")
            if not sep or not PARAM_NAME.fullmatch(key):
                raise ValueError(f"expected 'KEY=value', got {item!r}")
            pairs.append((key, val))
        else:
            raise ValueError("expected a map, a list of maps or a list of 'KEY=value' strings")
    return pairs


def _tokenize_params(text: str) -> list[tuple[str | None, str]]:
    """Split a params string: ``a "b c" K=v`` → positional a, b c and named K."""
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError as exc:
        raise ValueError(f"cannot split params {text!r}: {exc}") from None
    return [param_token(token) for token in tokens]


def param_token(token: str) -> tuple[str | None, str]:
    """One params token: ``K=v`` is named K, anything else positional. As in Dagu 1.30.2, K is
    anything up to the first ``=`` (not a valid variable name only): ``2=x`` sets the second
    positional param, ``a-b=c`` is the param ``a-b`` (case params_key_forms)."""
    key, sep, val = token.partition("=")
    if sep and key:
        return key, val
    return None, token


def parse_params(value: Any) -> list[tuple[str | None, str]]:
    """`params` in any form as ordered (name or None for positional, default value) pairs."""
    if value is None:
        return []
    if isinstance(value, str):
        return _tokenize_params(value)
    if isinstance(value, dict):
        if "schema" in value and set(value) <= {"schema", "values"}:
            # Dagu 1.30.2 applies the schema's defaults and validates the params against it.
            raise ValueError("not supported by dagloop (params checked by a JSON Schema)")
        return [(str(k), _json_scalar(v)) for k, v in value.items()]
    if isinstance(value, list):
        out: list[tuple[str | None, str]] = []
        for item in value:
            if isinstance(item, dict):
                out.extend((str(k), _json_scalar(v)) for k, v in item.items())
            elif isinstance(item, str):
                out.extend(_tokenize_params(item) if "=" in item else [(None, item)])
            else:
                out.append((None, _scalar_text(item)))
        return out
    # Dagu 1.30.2 refuses `params: 5` ("invalid parameter value")
    raise ValueError(f"invalid parameter value: {_yaml_kind(value)} {value!r}")


def _json_scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        import json

        try:
            return json.dumps(value, separators=(",", ":"), default=_scalar_text)
        except TypeError as exc:  # e.g. a date used as a map key
            raise ValueError(f"cannot be written as JSON: {exc}") from None
    return _scalar_text(value)


class ConditionSpec(_Spec):
    """A precondition: a command (met on exit 0) or a string compared with `expected`."""

    condition: str
    expected: str | None = None
    negate: GoBool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"condition": value}
        value = fold_keys(value, cls, "command")
        if isinstance(value, dict) and "command" in value and "condition" not in value:
            value = dict(value)
            value["condition"] = value.pop("command")  # deprecated alias
        if isinstance(value, dict):
            # Dagu: "precondition value must be a string" (`expected: 3` is refused)
            for key in ("condition", "expected"):
                if key in value and not isinstance(value[key], str):
                    raise ValueError(f"precondition value must be a string (value: {value[key]!r})")
        return value


def parse_conditions(value: Any) -> list[Any]:
    """`precondition(s)`: a string, one condition map, or a list of either."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError("expected a string, a condition map or a list of them")


class ContinueOnSpec(_Spec):
    """When downstream steps may proceed after this step failed or was skipped."""

    failure: GoBool = False
    skipped: GoBool = False
    exit_code: list[int] = Field(default_factory=list)
    output: list[str] = Field(default_factory=list)
    mark_success: GoBool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value == "failed":  # Dagu 1.30.2 refuses "failure" here
                return {"failure": True}
            if value == "skipped":
                return {"skipped": True}
            raise ValueError(f"expected 'failed' or 'skipped', got {value!r}")
        if isinstance(value, dict) and "failed" in value:
            # Dagu 1.30.2 reads `failed:` in the map as `failure:` too (continue_on_failed_key)
            value = dict(value)
            failed = value.pop("failed")
            value.setdefault("failure", failed)
        return value

    @field_validator("exit_code", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> list[int]:
        return _int_list(value)

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, value: Any) -> list[str]:
        return _str_list(value)


def _backoff(value: Any) -> float | None:
    """`backoff`: true is 2.0, false or null none; a number must be greater than 1."""
    if value is True:
        return 2.0
    if value is False or value is None:
        return None
    if isinstance(value, int):
        # Dagu 1.30.2 takes a boolean or a YAML float only: `backoff: 2` is refused by both
        # policies ("invalid type: uint64" / "invalid value for backoff"), `2.0` is not
        raise ValueError(f"expected a fraction or a boolean, got the integer {value}")
    if not isinstance(value, float):
        # Dagu 1.30.2 refuses text here, even "2"
        raise ValueError(f"expected a number or a boolean, got {_yaml_kind(value)} {value!r}")
    if not math.isfinite(value) or value <= 1:
        raise ValueError("backoff must be greater than 1 (or true for 2.0)")
    return float(value)


class RetryPolicySpec(_Spec):
    """Step retries. `limit` and `intervalSec` may be strings evaluated at run time."""

    limit: int | str
    interval_sec: int | str  # required, as in Dagu 1.30.2
    backoff: float | None = None
    max_interval_sec: GoInt | None = None
    exit_code: list[int] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, value: Any) -> Any:
        return _backoff(value)

    @field_validator("exit_code", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> list[int]:
        return _exit_code_list(value)

    @field_validator("limit", "interval_sec", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        # Dagu 1.30.2 decodes these as int or string only: 0.5, and even 1.0, are refused.
        if isinstance(value, float):
            raise ValueError(f"invalid type: float64 (value: {value:g})")
        return check_runtime_number(value)

    @field_validator("limit", "interval_sec")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must not be negative")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value


class RepeatPolicySpec(_Spec):
    """Repeat a step while/until a condition, exit code or success holds."""

    repeat: Literal["while", "until"] | None = None
    condition: str | None = None
    expected: str | None = None
    exit_code: list[int] = Field(default_factory=list)
    interval_sec: GoInt = 0
    limit: GoInt = 0
    backoff: float | None = None
    max_interval_sec: GoInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        value = fold_keys(value, cls)
        if "exitCode" in value:
            value["exitCode"] = _exit_code_list(value["exitCode"])
        if "expected" in value:
            value["expected"] = _scalar_text(value["expected"])
        repeat = value.get("repeat")
        if repeat is True:
            # Legacy form: infer the mode as Dagu does.
            has_cond = "condition" in value and "expected" not in value
            value["repeat"] = "until" if ("expected" in value or has_cond) else "while"
            if "condition" not in value and not value.get("exitCode"):
                value["repeat"] = "while"
        elif repeat is False:
            value["repeat"] = None
        elif repeat is None and ("condition" in value or "exitCode" in value):
            value["repeat"] = "until" if "expected" in value else "while"
        elif repeat in ("while", "until") and not (value.get("condition") or value.get("exitCode")):
            # Dagu 1.30.2 refuses an explicit mode with nothing to test (repeat_mode_needs_test)
            raise ValueError(
                f"repeat mode {repeat!r} requires either 'condition' or 'exitCode' to be specified"
            )
        # intervalSec and limit are Go ints in Dagu 1.30.2 (GoInt): a fraction is truncated
        # toward zero (0.5 s repeats at once) and, unlike retryPolicy, text is refused.
        value["backoff"] = _backoff(value.get("backoff"))
        return value


class OutputSpec(_Spec):
    """`output:` — capture stdout into variable `name`; `key` renames it in outputs.json."""

    name: str
    key: str | None = None
    omit: bool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @field_validator("omit", mode="before")
    @classmethod
    def _omit(cls, value: Any) -> Any:
        # `output` has its own decoder in Dagu 1.30.2, which takes a number as a truth value
        # and ignores text: `omit: "true"` omits nothing (step_misc_forms)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value != 0
        if isinstance(value, str):
            return False
        return value

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        name = value[1:] if value.startswith("$") else value
        if not PARAM_NAME.fullmatch(name):
            raise ValueError(f"output name {value!r} is not a valid variable name")
        return name


class ExecutorSpec(_Spec):
    """Executor type and its free-form configuration."""

    type: str = ""
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        return value


def go_number_text(value: int | float) -> str:
    """A number as Go's `%v` prints it: `2.5`, `1` for 1.0, `1e+21`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _parallel_item(item: Any) -> str | dict[str, str]:
    """A static `parallel.items` entry as text, or an object's values as text (Dagu 1.30.2
    refuses booleans, nulls and lists as items, and nulls and nested values inside one)."""
    if isinstance(item, str):
        return item
    if isinstance(item, int | float) and not isinstance(item, bool):
        return go_number_text(item)
    if isinstance(item, dict):
        out: dict[str, str] = {}
        for key, val in item.items():
            if isinstance(val, bool):
                out[str(key)] = "true" if val else "false"
            elif isinstance(val, int | float | str):
                out[str(key)] = val if isinstance(val, str) else go_number_text(val)
            else:
                raise ValueError(
                    "parameter values must be strings, numbers, or booleans, "
                    f"got {_yaml_kind(val)} for key {key}"
                )
        return out
    raise ValueError(f"parallel items must be strings, numbers, or objects, got {_yaml_kind(item)}")


class ParallelSpec(_Spec):
    """`parallel:` fan-out of a `call:` step over items: a static list (texts, or objects of
    texts), or a text (`${VAR}`, words, JSON) split into items when the step runs."""

    items: list[str | dict[str, str]] | str = Field(default_factory=list)
    max_concurrent: GoInt = Field(default=10, ge=1)  # Dagu sets no upper bound

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str | list):
            value = {"items": value}
        if isinstance(value, dict) and isinstance(value.get("items"), list):
            value = {**value, "items": [_parallel_item(i) for i in value["items"]]}
        return value


class StepSpec(StepBehaviour, _Spec):
    """One step. `depends is None` means "not given" (chain mode then injects the previous)."""

    name: str = ""
    id: str | None = None
    description: str = ""
    command: list[str] = Field(default_factory=list)
    script: str | None = None
    shell: list[str] | None = None
    shell_packages: list[str] = Field(default_factory=list)
    working_dir: str | None = None
    depends: list[str] | None = None
    output: OutputSpec | None = None
    stdout: str | None = None
    stderr: str | None = None
    log_output: Literal["separate", "merged"] | None = None  # None: the DAG's
    env: list[tuple[str, str]] = Field(default_factory=list)
    params: Any = None
    preconditions: list[ConditionSpec] = Field(default_factory=list)
    continue_on: ContinueOnSpec = Field(default_factory=ContinueOnSpec)
    retry_policy: RetryPolicySpec | None = None
    repeat_policy: RepeatPolicySpec | None = None
    timeout_sec: GoInt = Field(default=0, ge=0)
    signal_on_stop: str | None = None
    mail_on_error: GoBool = False
    call: str | None = None
    parallel: ParallelSpec | None = None
    executor: ExecutorSpec | None = None
    container: Any = None
    worker_selector: dict[str, str] = Field(default_factory=dict)
    llm: Any = None
    messages: Any = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"command": [value]}
        if not isinstance(value, dict):
            raise ValueError("a step must be a map or a command string")
        value = fold_keys(value, cls, "dir", "run", "precondition", "type", "config")
        # A deprecated alias given with its key: Dagu 1.30.2 takes the key (`workingDir` over
        # `dir`, `call` over `run`) and applies both precondition lists (case aliases_with_keys)
        if "dir" in value:
            alias = value.pop("dir")
            value.setdefault("workingDir", alias)
        if "run" in value:
            alias = value.pop("run")
            value.setdefault("call", alias)
        _merge_precondition_alias(value)
        if "type" in value or "config" in value:
            if "executor" in value:
                raise ValueError("use 'type'/'config' or 'executor', not both")
            value["executor"] = {"type": value.pop("type", ""), "config": value.pop("config", {})}
        return value

    # Shape conversions live in field validators so an error names the field it is about.
    @field_validator("preconditions", mode="before")
    @classmethod
    def _preconditions(cls, value: Any) -> list[Any]:
        return parse_conditions(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> list[tuple[str, str]]:
        return parse_env_entries(value)

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> list[str]:
        if isinstance(value, str) and not value:
            raise ValueError("step command is empty")
        return _str_list(value)

    @field_validator("depends", mode="before")
    @classmethod
    def _depends(cls, value: Any) -> list[str]:
        return _str_list(value, what="a step name or a list of step names")

    @field_validator("shell", mode="before")
    @classmethod
    def _shell(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        return shlex.split(value) if isinstance(value, str) else _str_list(value)

    @field_validator("shell_packages", mode="before")
    @classmethod
    def _shell_packages(cls, value: Any) -> list[str]:
        return _str_list(value)

    @field_validator("name", mode="before")
    @classmethod
    def _name_text(cls, value: Any) -> str:
        return _scalar_text(value)  # Dagu 1.30.2 takes `name: 5` for a step

    @field_validator("description", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else _go_text(value)

    @field_validator("call", mode="before")
    @classmethod
    def _call_text(cls, value: Any) -> str | None:
        return None if value is None else _scalar_text(value)

    @field_validator("log_output", mode="before")
    @classmethod
    def _log_output(cls, value: Any) -> str | None:
        return _log_output(value)

    @field_validator("script", "id", mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> str | None:
        return None if value is None else _go_text(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not STEP_ID_PATTERN.match(value):
            raise ValueError(
                f"invalid step ID format: must match pattern {STEP_ID_PATTERN.pattern} "
                f"(value: {value})"
            )
        return value

    @field_validator("worker_selector")
    @classmethod
    def _worker_selector(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # Dagu 1.30.2 refuses a step-level selector on steps that do not launch a sub-DAG.
        if not value or info.data.get("call") or info.data.get("parallel"):
            return value
        executor = info.data.get("executor")
        kind = executor.type if executor is not None else ""
        if kind not in ("dag", "subworkflow", "parallel"):
            raise ValueError(f"executor type {kind!r} does not support workerSelector")
        return value

    @field_validator("signal_on_stop")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        # Dagu 1.30.2 takes the exact name only: "INT" and "sigint" are refused.
        if value is not None and value not in SIGNALS:
            raise ValueError(f"unknown signal {value!r}")
        return value


class HandlerOnSpec(HandlerOnBehaviour, _Spec):
    """Lifecycle handlers; `cancel` is Dagu's deprecated alias of `abort`."""

    init: StepSpec | None = None
    success: StepSpec | None = None
    failure: StepSpec | None = None
    abort: StepSpec | None = None
    exit: StepSpec | None = None
    wait: StepSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        value = fold_keys(value, cls, "cancel")
        if isinstance(value, dict) and "cancel" in value:
            value = dict(value)
            if "abort" in value:
                raise ValueError("use 'abort' or its deprecated alias 'cancel', not both")
            value["abort"] = value.pop("cancel")
        return value

    @field_validator("init", "success", "failure", "abort", "exit", "wait", mode="before")
    @classmethod
    def _step_map(cls, value: Any) -> Any:
        # Dagu 1.30.2 decodes a handler into a step struct: no command shorthand here.
        if isinstance(value, str):
            raise ValueError("a handler must be a map (e.g. {command: ...}), got a string")
        return value


def _checked_cron(expression: str) -> str:
    if problem := check_cron(expression):
        raise ValueError(problem)
    return expression


# One validated expression per list item, so an error points at the item that is wrong.
CronExpression = Annotated[str, AfterValidator(_checked_cron)]


class ScheduleSpec(_Spec):
    """Cron expressions to start, stop and restart the DAG."""

    start: list[CronExpression] = Field(default_factory=list)
    stop: list[CronExpression] = Field(default_factory=list)
    restart: list[CronExpression] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str | list):
            return {"start": [value] if isinstance(value, str) else value}
        if isinstance(value, dict):
            # Unknown kinds are left to extra="forbid", which names the key.
            return {
                k: [v] if isinstance(v, str) else ([] if v is None else v) for k, v in value.items()
            }
        raise ValueError("expected a cron string, a list of them, or {start, stop, restart}")


class MailOnSpec(_Spec):
    """On which final statuses to send mail."""

    failure: GoBool = False
    success: GoBool = False
    wait: GoBool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)


class MailSpec(_Spec):
    """`errorMail` / `infoMail` / `waitMail`."""

    model_config = ConfigDict(
        defer_build=True, populate_by_name=True, alias_generator=to_camel, frozen=True
    )

    from_: str = Field(default="", alias="from")
    to: list[str] = Field(default_factory=list)
    prefix: str = ""
    attach_logs: GoBool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> list[str]:
        return _str_list(value)


class SmtpSpec(_Spec):
    """SMTP server; `port` may be a string or an integer."""

    host: str = ""
    port: str = ""
    username: str = ""
    password: str = ""

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> str:
        # Dagu 1.30.2 takes an integer or any text; a fraction or a boolean is refused.
        if isinstance(value, float | bool) or (isinstance(value, int) and value < 0):
            raise ValueError(f"port must be a positive integer, got {_scalar_text(value)}")
        if value is None or value == "":
            return ""
        return _scalar_text(check_runtime_number(value))


def _first_problem(exc: ValidationError) -> str:
    """`key: message` of a nested model's first error, for a field kept as a plain map."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return f"{where}: {what}" if where else what


class SecretSpec(_Spec):
    """One entry of `secrets:`, checked as Dagu 1.30.2 checks it (kept as a plain map)."""

    name: StrictStr = Field(min_length=1)
    provider: StrictStr = Field(min_length=1)
    key: StrictStr = Field(min_length=1)
    options: dict[str, StrictStr] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)


class RunConfigSpec(_Spec):
    """`runConfig`: what the UI's start dialog lets a user edit (kept as a plain map)."""

    disable_param_edit: StrictBool = False
    disable_run_id_edit: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return fold_keys(value, cls)


class DagSpec(_Spec):
    """One YAML document of a DAG file, with every field in canonical form."""

    name: str | None = None
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    group: str = ""
    type: Literal["chain", "graph"] = "chain"
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    skip_if_successful: GoBool = False
    restart_wait_sec: GoInt = Field(default=0, ge=0)
    delay_sec: GoInt = Field(default=0, ge=0)
    params: list[tuple[str | None, str]] = Field(default_factory=list)
    env: list[tuple[str, str]] = Field(default_factory=list)
    dotenv: list[str] | None = None
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    working_dir: str | None = None
    shell: list[str] | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    timeout_sec: GoInt = Field(default=0, ge=0)
    max_active_runs: GoInt = 1
    max_active_steps: GoInt = Field(default=0, ge=0)
    queue: str | None = None
    preconditions: list[ConditionSpec] = Field(default_factory=list)
    max_clean_up_time_sec: GoInt = Field(default=DEFAULT_MAX_CLEANUP_SECONDS, ge=0)
    max_output_size: GoInt = Field(default=DEFAULT_MAX_OUTPUT_SIZE, ge=1)
    run_config: dict[str, Any] = Field(default_factory=dict)
    worker_selector: dict[str, str] = Field(default_factory=dict)
    handler_on: HandlerOnSpec = Field(default_factory=HandlerOnSpec)
    mail_on: MailOnSpec | None = None
    error_mail: MailSpec | None = None
    info_mail: MailSpec | None = None
    wait_mail: MailSpec | None = None
    smtp: SmtpSpec | None = None
    log_dir: str | None = None
    log_output: Literal["separate", "merged"] = "separate"
    hist_retention_days: GoInt = DEFAULT_HIST_RETENTION_DAYS
    container: Any = None
    registry_auths: Any = None
    ssh: Any = None
    llm: Any = None
    otel: Any = None
    # dagloop extensions (Dagu HEAD has catch-up too): missed ticks within the window run.
    catchup_window_sec: GoInt = Field(default=0, ge=0)
    overlap_policy: Literal["skip", "all", "latest"] = "skip"

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("a DAG document must be a map")
        value = fold_keys(value, cls, "precondition")
        _merge_precondition_alias(value)
        if "preconditions" in value:
            value["preconditions"] = parse_conditions(value["preconditions"])
        if "name" in value and value["name"] is not None:
            value["name"] = _go_text(value["name"])
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (problem := validate_name(value)):
            raise ValueError(problem)
        return value

    @field_validator("description", "group", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else _go_text(value)

    @field_validator("log_output", mode="before")
    @classmethod
    def _log_output(cls, value: Any) -> str:
        return _log_output(value) or "separate"

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if value == "agent":
            raise ValueError("type 'agent' is reserved and not supported")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        raw = [value] if isinstance(value, str) else _str_list(value)
        return [t.strip().lower() for item in raw for t in item.split(",") if t.strip()]

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any) -> list[tuple[str | None, str]]:
        return parse_params(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> list[tuple[str, str]]:
        return parse_env_entries(value)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # pydantic names the wrong type
        names: set[str] = set()
        out = []
        for i, entry in enumerate(value):
            try:
                secret = SecretSpec.model_validate(entry).model_dump()
            except ValidationError as exc:
                raise ValueError(f"secret at index {i}: {_first_problem(exc)}") from None
            if secret["name"] in names:
                raise ValueError(f"duplicate secret name {secret['name']!r}")
            names.add(secret["name"])
            out.append(secret)
        return out

    @field_validator("run_config", mode="before")
    @classmethod
    def _run_config(cls, value: Any) -> Any:
        if value is None:
            return {}
        try:
            return RunConfigSpec.model_validate(value).model_dump(by_alias=True)
        except ValidationError as exc:
            raise ValueError(_first_problem(exc)) from None

    @field_validator("dotenv", mode="before")
    @classmethod
    def _dotenv(cls, value: Any) -> list[str] | None:
        return None if value is None else _str_list(value)

    @field_validator("shell", mode="before")
    @classmethod
    def _shell(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        return shlex.split(value) if isinstance(value, str) else _str_list(value)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[Any]:
        """Map-form steps become a list; nested lists stay marked as parallel groups."""
        if value is None:
            return []
        if isinstance(value, dict):
            out = []
            for key, step in value.items():
                if isinstance(step, str):
                    raise ValueError(f"step {key!r} of the map form must be a map, got a string")
                step = dict(step or {})
                step.setdefault("name", str(key))
                out.append(step)
            return out
        if not isinstance(value, list):
            raise ValueError("expected a list of steps or a map of name to step")
        return value
