"""Shared output of the benchmark scripts: a header line and a Markdown table."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any


def machine() -> str:
    """One line naming the machine and Python."""
    return f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}"


def print_table(header: str, rows: Sequence[Mapping[str, Any]], digits: int = 3) -> None:
    """Print ``header``, a blank line, then ``rows`` as a Markdown table (floats rounded)."""
    print(header + "\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
