"""The run's token budget, with reservations.

Each launch reserves its estimate (for ``sim`` its configured tokens, for an
LLM prompt estimate plus max output) before it starts and settles it with the
real usage when it ends. A launch is allowed only if usage plus every open
reservation plus its own estimate fits, so concurrent steps can never push the
run past its budget (checking usage alone, as LiteLLM does, lets N parallel
calls each see the same headroom and overshoot together).
"""

from __future__ import annotations

from core.errors import BadInput
from core.limits import MAX_TOKENS


def parse_token_budget(text: str, what: str = "a token budget") -> int | None:
    """A budget as an operator types it (``50000``, ``50_000``, ``50,000``, ``none``); ``BadInput`` otherwise.

    The command line and the dashboard read budgets with this one rule.
    """
    raw = text.strip().lower().replace("_", "").replace(",", "")
    if raw in ("", "none", "unlimited"):
        return None
    if not raw.isdigit():
        raise BadInput(f"{what} takes a whole number of tokens or 'none', not {text!r}")
    return check_token_budget(int(raw), what)


def check_token_budget(limit: int | None, what: str = "a token budget") -> int | None:
    """``limit`` if it is a budget loopdeck can hold (0 to ``MAX_TOKENS``, or None: no limit)."""
    if limit is not None and not 0 <= limit <= MAX_TOKENS:
        raise BadInput(f"{what} is 0 to {MAX_TOKENS:,} tokens (or none), not {limit:,}")
    return limit


class TokenBudget:
    def __init__(self, limit: int | None, used: int = 0) -> None:
        self.limit = limit
        self.used = used
        self.reserved = 0

    def __repr__(self) -> str:
        return f"<TokenBudget used={self.used} reserved={self.reserved} limit={self.limit}>"

    def fits(self, estimate: int) -> bool:
        return self.limit is None or self.used + self.reserved + estimate <= self.limit

    def reserve(self, estimate: int) -> None:
        self.reserved += estimate

    def settle(self, estimate: int, actual: int) -> None:
        """An attempt ended: release its reservation, count what it really spent."""
        self.reserved -= estimate
        self.used += actual

    def shortfall(self, key: str, estimate: int) -> str:
        """Why a step cannot launch, naming the budget and the usage."""
        return (
            f'token budget {self.limit:,} exhausted: {self.used:,} tokens used, step "{key}" may need {estimate:,} more'
        )
