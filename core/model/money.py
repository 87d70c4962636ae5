"""Dollars as loopdeck keeps and shows them (no pricing tables here: reading a cost needs none)."""

from __future__ import annotations


def usd(value: float | None) -> float | None:
    """Dollars to a hundred-millionth, as loopdeck shows them: enough for one token of the cheapest model,
    without float dust."""
    return None if value is None else round(value, 8)
