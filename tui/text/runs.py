"""A listed run in words, the same in `loopdeck runs` and the dashboard's runs list: what it waits for, and
whether anything drives it (the ``waiting_for`` and ``driver`` keys of ``runs --json``)."""

from __future__ import annotations

from typing import Any


def waiting_words(run: dict[str, Any]) -> str:
    """``publish, tool delete_notes`` (or ``plan review``); empty when nothing waits for an operator."""
    return ", ".join(run.get("waiting_for") or ())


def driver_words(run: dict[str, Any]) -> str | None:
    """``driver gone`` (its process died or its lease expired), ``no driver`` (nobody took it), or None."""
    state = (run.get("driver") or {}).get("state")
    return {"gone": "driver gone", "none": "no driver"}.get(state or "")
