"""Land-cover models: the registry, the Dynamic World port, and weight handling.

Examples
--------
>>> from dwcube.models import get_entry
>>> get_entry("dynamic-world").output
'logits'
"""

from __future__ import annotations

from .registry import LoadedModel, ModelEntry, UnknownModelError, get_entry, list_entries, load_model, register
from .weights import WeightsError, WeightsHashError, WeightsNotFoundError

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "UnknownModelError",
    "WeightsError",
    "WeightsHashError",
    "WeightsNotFoundError",
    "get_entry",
    "list_entries",
    "load_model",
    "register",
]
