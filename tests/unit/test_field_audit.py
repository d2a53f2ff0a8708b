"""The field audit of docs/compatibility.md covers exactly the fields of the spec models.

Issue 15: no field is accepted and ignored. Each field is implemented, refused at validate time
or a listed difference, and the table says which; a field added to `model/spec.py` without a
row, or a row left behind by a removed field, fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

import model.spec as spec
from model.loader import DagLoadError, load_dag_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
SECTION = "## Field audit"
STATUSES = {"implemented", "refused", "difference"}

# Where each model's fields live in a DAG file: the prefix of its rows in the table.
PREFIXES: dict[type[BaseModel], str] = {
    spec.DagSpec: "",
    spec.StepSpec: "step.",
    spec.HandlerOnSpec: "handlerOn.",
    spec.ConditionSpec: "precondition.",
    spec.ContinueOnSpec: "continueOn.",
    spec.RetryPolicySpec: "retryPolicy.",
    spec.RepeatPolicySpec: "repeatPolicy.",
    spec.OutputSpec: "output.",
    spec.ExecutorSpec: "executor.",
    spec.ParallelSpec: "parallel.",
    spec.ScheduleSpec: "schedule.",
    spec.MailOnSpec: "mailOn.",
    spec.MailSpec: "mail.",
    spec.SmtpSpec: "smtp.",
    spec.SecretSpec: "secrets.",
    spec.RunConfigSpec: "runConfig.",
}


def spec_models() -> set[type[BaseModel]]:
    """Every pydantic model defined in model/spec.py except the shared base."""
    return {
        cls
        for cls in vars(spec).values()
        if inspect.isclass(cls)
        and issubclass(cls, BaseModel)
        and cls.__module__ == spec.__name__
        and not cls.__name__.startswith("_")
    }


def spec_fields() -> set[str]:
    """The YAML key of every field of every spec model, with its model's prefix."""
    return {
        PREFIXES[model] + (info.alias or name)
        for model in spec_models()
        for name, info in model.model_fields.items()
    }


def audit_rows() -> dict[str, str]:
    """Field -> status from the audit table of docs/compatibility.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \|", section, flags=re.MULTILINE)
    assert len(rows) == len(dict(rows)), "a field has two rows"
    return dict(rows)


def test_every_spec_model_has_a_prefix() -> None:
    assert spec_models() == set(PREFIXES)


def test_every_spec_field_has_exactly_one_audit_row() -> None:
    rows = audit_rows()
    fields = spec_fields()
    assert sorted(fields - set(rows)) == [], "fields without a row in the audit table"
    assert sorted(set(rows) - fields) == [], "rows for fields that do not exist"


def test_every_row_has_a_known_status() -> None:
    assert {field: s for field, s in audit_rows().items() if s not in STATUSES} == {}


# A smallest DAG using each refused field, with the field path the refusal must name.
REFUSED_EXAMPLES: dict[str, tuple[str, str]] = {
    "container": ("container: {image: alpine}\nsteps: [echo]\n", "container"),
    "registryAuths": ("registryAuths: {ghcr.io: x}\nsteps: [echo]\n", "registryAuths"),
    "ssh": ("ssh: {user: u, host: h}\nsteps: [echo]\n", "ssh"),
    "llm": ("llm: {provider: openai}\nsteps: [echo]\n", "llm"),
    "otel": ("otel: {enabled: true}\nsteps: [echo]\n", "otel"),
    "step.shellPackages": (
        "steps:\n  - {command: echo, shellPackages: [jq]}\n",
        "steps[0].shellPackages",
    ),
    "step.container": (
        "steps:\n  - {command: echo, container: {image: alpine}}\n",
        "steps[0].container",
    ),
    "step.llm": ("steps:\n  - {type: chat, llm: {provider: openai}}\n", "steps[0].llm"),
    "step.messages": ("steps:\n  - {type: chat, messages: [{role: user}]}\n", "steps[0].messages"),
}


def test_every_refused_field_has_an_example() -> None:
    refused = {field for field, status in audit_rows().items() if status == "refused"}
    assert set(REFUSED_EXAMPLES) == refused


@pytest.mark.parametrize("field", sorted(REFUSED_EXAMPLES))
def test_refused_field_is_refused_at_load_with_its_reason(field: str) -> None:
    text, path = REFUSED_EXAMPLES[field]
    with pytest.raises(DagLoadError) as caught:
        load_dag_text(text, file="d.yaml")
    messages = [f"{e.field}: {e.message}" for e in caught.value.errors]
    assert any(m.startswith(f"{path}: not supported by dagloop (") for m in messages), messages
