"""Argument types: values a command line gives (a JSON input, a budget, a count), parsed and checked.

The same rules the dashboard uses (``core.parse_json``, ``core.parse_token_budget``),
applied by argparse before any database is opened: bad input writes nothing and exits 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from core import BadInput, limits, parse_cost_budget, parse_json, parse_token_budget


class Given:
    """A value given on the command line, parsed and checked before any database is opened."""

    def __init__(self, value: Any) -> None:
        self.value = value


def count(text: str) -> int:
    """A positive whole number for a listing or a pool (argparse reports a ValueError as exit 2)."""
    value = int(text.replace("_", ""))
    if not 1 <= value <= limits.MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1 to {limits.MAX_LIST_LIMIT:,}, not {text}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (the system picks a free one) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {text}")
    return value


def speed(text: str) -> float:
    """How many times faster the demo runs: 1 to 100."""
    value = float(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1 to 100, not {text}")
    return value


def repairs(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0 to 100, not {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= limits.MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {limits.MAX_SECONDS:g}, not {text}"
        )
    return value


def json_input(text: str) -> Given:
    try:
        return Given(parse_json(text, "--input"))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_value(text: str) -> Given:
    try:
        return Given(parse_token_budget(text, "--set"))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dollars_value(text: str) -> Given:
    try:
        return Given(parse_cost_budget(text, "--usd"))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


count.__name__ = repairs.__name__ = "number"  # what argparse calls a bad value: "invalid number value"
seconds.__name__ = "seconds"
