"""Secret values of one run and their masking as `*****`.

Owns the rule "which values are secrets" (issue 6): every value read from a dotenv file, the
SMTP password, and every `env` value whose *name* matches one of the configurable secret
patterns (`Settings.secret_patterns`, default `*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`).
The runner builds one `SecretMasker` per run with `collect_secrets` and passes every log line,
mail body, stored output and API-visible text through `SecretMasker.mask`.

A DAG's own `secrets:` (Dagu's `env`/`file` providers, resolved by
`controller.engine.variables`) are masked as Dagu masks them: any non-empty value, as
`DAG_SECRET_MASK`, with a `dag_secret_masker`.

Pure: no I/O. Called by the engine (`launch`, for the run's alerts and logs; `runparams`) and
by the API's DAG views (`api.dagview`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence

SECRET_MASK = "*****"

# The mask Dagu 1.30.2 writes for the values of a DAG's `secrets:` (seven stars, observed in
# step logs and outputs.json); kept for those values so outputs compare equal with Dagu's.
DAG_SECRET_MASK = "*******"

# Values shorter than this are not masked. Masking "1", "on" or "dev" would shred every log
# line (all dotenv values count as secrets, and `DEBUG=1` is common) while hiding nothing:
# a secret that short can be guessed anyway. Documented in docs/alerting.md.
MIN_SECRET_LENGTH = 4


class SecretMasker:
    """Replaces every registered secret value by `*****` in a text.

    Each value is registered in two forms, as is and JSON-escaped, so a secret that contains
    quotes or newlines is also caught inside a JSON document (outputs.json, API bodies).
    Longer values are replaced first, so a secret containing another one is masked whole.
    """

    def __init__(
        self,
        values: Iterable[str] = (),
        *,
        mask: str = SECRET_MASK,
        min_length: int = MIN_SECRET_LENGTH,
    ) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._mask = mask
        self._min_length = max(min_length, 1)
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Register `value`; values shorter than the masker's `min_length` are ignored."""
        if len(value) < self._min_length:
            return
        forms = {value, json.dumps(value)[1:-1]}
        if not forms <= self._values:
            self._values |= forms
            self._pattern = None

    @property
    def values(self) -> frozenset[str]:
        """The registered values (both forms); for handing on to `controller.logs.add_secret`."""
        return frozenset(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._values:
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return self._pattern

    def mask(self, text: str) -> str:
        """`text` with every registered value replaced by the mask."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(self._mask, text)

    def mask_bytes(self, data: bytes) -> bytes:
        """`mask` for raw output; bytes that are not UTF-8 are kept as they are."""
        if self._compiled() is None or not data:
            return data
        return self.mask(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def secret_env_names(names: Iterable[str], patterns: Sequence[str]) -> set[str]:
    """The names matching any fnmatch-style pattern (`*TOKEN*`), compared case-insensitively."""
    upper = [p.upper() for p in patterns]
    return {name for name in names if any(fnmatch.fnmatchcase(name.upper(), p) for p in upper)}


def collect_secrets(
    *,
    env_pairs: Iterable[tuple[str, str]],
    dotenv_values: Mapping[str, str],
    smtp_password: str | None,
    patterns: Sequence[str],
) -> SecretMasker:
    """The masker of one run: all dotenv values, env values with secret-looking names, and
    the (already expanded) SMTP password."""
    masker = SecretMasker(dotenv_values.values())
    pairs = list(env_pairs)
    secret_names = secret_env_names((name for name, _ in pairs), patterns)
    for name, value in pairs:
        if name in secret_names:
            masker.add(value)
    if smtp_password:
        masker.add(smtp_password)
    return masker


def dag_secret_masker(values: Iterable[str]) -> SecretMasker:
    """The masker of a DAG's resolved `secrets:` values: Dagu masks every non-empty one,
    however short, as `DAG_SECRET_MASK`."""
    return SecretMasker(values, mask=DAG_SECRET_MASK, min_length=1)
