"""Dollars as operators read them: ``$0.0123``, ``$4.57``, ``$1,204``; ``?`` where the price is unknown."""

from __future__ import annotations


def dollars(value: float | None, unpriced: int = 0) -> str:
    """A cost; ``unpriced`` steps (or attempts) whose price is unknown make it a lower bound (``$0.42+``)."""
    if value is None:
        return "?"
    if value == 0:
        text = "$0"
    elif value < 0.01:
        text = f"${value:.4f}"
    elif value < 1000:
        text = f"${value:,.2f}"
    else:
        text = f"${value:,.0f}"
    return text + ("+" if unpriced else "")


def budget_text(limit: float | None, usd: bool) -> str:
    """A budget as it was set: ``no limit``, ``$5.00`` (dollars) or ``12,345`` (tokens)."""
    if limit is None:
        return "no limit"
    return dollars(limit) if usd else f"{limit:,}"
