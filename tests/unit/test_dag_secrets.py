"""`resolve_secrets` (a DAG's `secrets:`, Dagu's env and file providers) and the masker of
their values, on real files in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.engine.variables import SecretError, resolve_secrets
from controller.secrets import dag_secret_masker


def test_env_provider_reads_the_given_variables() -> None:
    values = resolve_secrets(
        [{"name": "TOKEN", "provider": "env", "key": "SRC"}],
        variables={"SRC": "abc123"},
        workdir=Path("/nonexistent"),
    )
    assert values == {"TOKEN": "abc123"}


def test_file_provider_keeps_the_content_untrimmed_and_reads_relative_to_workdir(
    tmp_path: Path,
) -> None:
    (tmp_path / "db.secret").write_text("  pass\n\n")
    values = resolve_secrets(
        [{"name": "DB", "provider": "file", "key": "db.secret"}], variables={}, workdir=tmp_path
    )
    assert values == {"DB": "  pass\n\n"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"name": "A", "provider": "env", "key": "NOPE"},
            'failed to resolve secret "A" from provider "env": environment variable "NOPE" '
            "is not set",
        ),
        (
            {"name": "B", "provider": "file", "key": "missing.secret"},
            'failed to resolve secret "B" from provider "file": secret file not found: '
            "missing.secret",
        ),
        ({"name": "C", "provider": "vault", "key": "x"}, "unknown secret provider: vault"),
    ],
)
def test_an_unresolvable_secret_raises_naming_it(
    tmp_path: Path, item: dict[str, str], message: str
) -> None:
    with pytest.raises(SecretError) as err:
        resolve_secrets([item], variables={}, workdir=tmp_path)
    assert str(err.value).startswith(message)


def test_dag_secrets_are_masked_with_seven_stars_however_short() -> None:
    masker = dag_secret_masker(["ab", "long-value", ""])
    assert masker.mask("x=ab y=long-value") == "x=******* y=*******"
    assert masker.mask("nothing here") == "nothing here"
