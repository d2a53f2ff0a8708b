"""Secret masking: which values are secrets and how they are replaced by `*****`."""

from __future__ import annotations

import json
from pathlib import Path

from controller.secrets import (
    MIN_SECRET_LENGTH,
    SECRET_MASK,
    SecretMasker,
    collect_secrets,
    secret_env_names,
)
from model.config import Settings

DEFAULT_PATTERNS: tuple[str, ...] = ("*PASSWORD*", "*SECRET*", "*TOKEN*", "*KEY*")


def test_default_patterns_are_the_settings_default(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, dags_dir=tmp_path, log_dir=tmp_path, data_dir=tmp_path, base_config=tmp_path
    )
    assert settings.secret_patterns == DEFAULT_PATTERNS


def test_mask_replaces_every_occurrence() -> None:
    masker = SecretMasker(["hunter22"])
    assert masker.mask("a hunter22 b hunter22") == f"a {SECRET_MASK} b {SECRET_MASK}"
    assert masker.mask("nothing here") == "nothing here"


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    masker = SecretMasker(["abcd", "abcdefgh"])
    assert masker.mask("x abcdefgh y abcd") == f"x {SECRET_MASK} y {SECRET_MASK}"


def test_json_escaped_form_is_masked_too() -> None:
    secret = 'pa"ss\nword'
    masker = SecretMasker([secret])
    doc = json.dumps({"out": f"value={secret}"})
    assert "ss" not in masker.mask(doc).replace("*****", "")
    assert json.loads(masker.mask(doc)) == {"out": f"value={SECRET_MASK}"}


def test_short_and_empty_values_are_ignored() -> None:
    masker = SecretMasker(["", "1", "abc"])
    assert len(masker) == 0
    assert masker.mask("1 abc") == "1 abc"
    masker.add("x" * MIN_SECRET_LENGTH)
    assert masker.mask("xxxx") == SECRET_MASK


def test_mask_bytes_keeps_non_utf8_bytes() -> None:
    masker = SecretMasker(["s3cret!"])
    assert masker.mask_bytes(b"\xff\xfe s3cret! \x00") == b"\xff\xfe ***** \x00"
    assert SecretMasker().mask_bytes(b"s3cret!") == b"s3cret!"


def test_secret_env_names_match_case_insensitively() -> None:
    names = ["DB_PASSWORD", "api_token", "SSH_KEY_PATH", "MySecretThing", "HOME", "PATH"]
    assert secret_env_names(names, DEFAULT_PATTERNS) == {
        "DB_PASSWORD",
        "api_token",
        "SSH_KEY_PATH",
        "MySecretThing",
    }
    assert secret_env_names(names, ["HO?E"]) == {"HOME"}
    assert secret_env_names(names, []) == set()


def test_collect_secrets_takes_dotenv_values_secret_env_and_smtp_password() -> None:
    masker = collect_secrets(
        env_pairs=[("API_TOKEN", "tok-123456"), ("GREETING", "hello-world"), ("A_KEY", "")],
        dotenv_values={"ANYTHING": "from-dotenv", "FLAG": "1"},
        smtp_password="smtp-pass",
        patterns=DEFAULT_PATTERNS,
    )
    text = "tok-123456 hello-world from-dotenv smtp-pass 1"
    assert masker.mask(text) == "***** hello-world ***** ***** 1"


def test_collect_secrets_with_custom_patterns() -> None:
    masker = collect_secrets(
        env_pairs=[("API_TOKEN", "tok-123456"), ("CREDENTIALS", "c-r-e-d")],
        dotenv_values={},
        smtp_password=None,
        patterns=["*CRED*"],
    )
    assert masker.mask("tok-123456 c-r-e-d") == "tok-123456 *****"
