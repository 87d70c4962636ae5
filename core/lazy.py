"""A module imported when first used: the orchestrator's parts a reading command never needs.

``loopdeck runs`` builds the whole ``Orchestrator`` (its acting and driving
parts are its methods) but decides on no run: with the engine's modules
behind ``LazyModule``, it never imports them (about 60 ms of every command's
start). Ten lines instead of ``importlib.util.LazyLoader``, which must find
the module's spec first (importing its package) and is not thread-safe
before Python 3.12.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """``LazyModule("core.engine.actions").Approve`` imports the module on that first use (then it is cached)."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)
