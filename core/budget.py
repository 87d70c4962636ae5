"""The run's token budget, with reservations.

Each launch reserves its estimate (for ``sim`` its configured tokens, for an
LLM prompt estimate plus max output) before it starts and settles it with the
real usage when it ends. A launch is allowed only if usage plus every open
reservation plus its own estimate fits, so concurrent steps can never push the
run past its budget (checking usage alone, as LiteLLM does, lets N parallel
calls each see the same headroom and overshoot together).
"""

from __future__ import annotations


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
        return (f"token budget {self.limit:,} exhausted: {self.used:,} tokens used, "
                f'step "{key}" may need {estimate:,} more')
