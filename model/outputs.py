"""How a step's output variable is named in a run's outputs.json (Dagu's `camelCase` keys).

Pure naming, no imports: the read models (`controller.views.runs`, for the API and
`dagloop status --json`) call it; the engine records outputs under their own names.
"""

from __future__ import annotations


def camel_key(name: str) -> str:
    """outputs.json key of an output variable: ``OUT1`` → ``out1``, ``MY_VAR`` → ``myVar``."""
    parts = [p for p in name.split("_") if p]
    if not parts:
        return name
    first = parts[0].lower()
    return first + "".join(p[:1].upper() + p[1:].lower() for p in parts[1:])
