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
from core.limits import MAX_TOKENS, MAX_USD


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


class Budget:
    """A limit with reservations (tokens, or dollars): ``used`` plus every open reservation stays within it."""

    unit: str  # what it counts, as events say it
    flag: str  # the `loopdeck budget` option that raises it

    def __init__(self, limit: float | None, used: float = 0) -> None:
        self.limit = limit
        self.used = used
        self.reserved: float = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} used={self.used} reserved={self.reserved} limit={self.limit}>"

    def fits(self, estimate: float) -> bool:
        return self.limit is None or self.used + self.reserved + estimate <= self.limit

    def reserve(self, estimate: float) -> None:
        self.reserved += estimate

    def settle(self, estimate: float, actual: float) -> None:
        """An attempt ended: release its reservation, count what it really spent."""
        self.reserved -= estimate
        self.used += actual

    def shortfall(self, key: str, estimate: float) -> str:
        raise NotImplementedError


class TokenBudget(Budget):
    unit = "tokens"  # the budget_exhausted event's unit; `loopdeck budget --set N` raises it
    flag = "--set N"

    def shortfall(self, key: str, estimate: float) -> str:
        """Why a step cannot launch, naming the budget and the usage."""
        return (
            f'token budget {self.limit:,} exhausted: {self.used:,} tokens used, step "{key}" may need {estimate:,} more'
        )


class CostBudget(Budget):
    """The run's budget in US dollars (``policy.cost_budget_usd``): the same reservations, in dollars.

    An attempt reserves what its agent's token estimate would cost at its price; spending whose
    price is unknown cannot be reserved or counted (the run says how many steps are unpriced).
    """

    unit = "usd"
    flag = "--usd DOLLARS"

    def fits(self, estimate: float) -> bool:
        return self.limit is None or self.used + self.reserved + estimate <= self.limit + 1e-9  # float dust

    def shortfall(self, key: str, estimate: float) -> str:
        return (
            f"cost budget ${self.limit or 0:,.2f} exhausted: ${self.used:,.4f} spent, "
            f'step "{key}" may cost ${estimate:,.4f} more'
        )


def parse_cost_budget(text: str, what: str = "a cost budget") -> float | None:
    """Dollars as an operator types them (``5``, ``$5``, ``2.50``, ``none``); ``BadInput`` otherwise."""
    raw = text.strip().lower().lstrip("$").replace(",", "").replace("_", "")
    if raw in ("", "none", "unlimited"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{what} takes dollars (like 5 or 2.50) or 'none', not {text!r}") from None
    return check_cost_budget(value, what)


def check_cost_budget(limit: float | None, what: str = "a cost budget") -> float | None:
    """``limit`` if it is a dollar budget loopdeck can hold (0 to ``MAX_USD``, or None: no limit)."""
    if limit is not None and not (0 <= limit <= MAX_USD):  # NaN fails both comparisons
        raise BadInput(f"{what} is $0 to ${MAX_USD:,.0f} (or none), not {limit!r}")
    return limit
