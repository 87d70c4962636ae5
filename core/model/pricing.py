"""What model calls cost, in US dollars: the agent's own ``price``, else the ``genai-prices`` data.

An agent's ``price`` (dollars per million input and output tokens) wins: it is
how a self-hosted or unlisted model gets one. An ``llm`` agent without one is
looked up in genai-prices' offline snapshot by its model and the provider its
endpoint belongs to (no network, ever; an endpoint genai-prices does not know,
such as a local server, gets no price rather than a cloud provider's).
Spending that cannot be priced costs ``None`` — unknown, never zero;
spending nothing costs nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_PRICE = 1_000_000.0  # dollars per million tokens: far above any model's


class Price(BaseModel):
    """An agent's price: dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    input_per_mtok: float = Field(ge=0, le=MAX_PRICE, description="dollars per million input (prompt) tokens")
    output_per_mtok: float = Field(ge=0, le=MAX_PRICE, description="dollars per million output (completion) tokens")
    cached_input_per_mtok: float | None = Field(
        None, ge=0, le=MAX_PRICE, description="dollars per million prompt tokens read from the cache (default: input)"
    )

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        """``cached``: of the ``prompt`` tokens, those the server read from its cache."""
        cached = min(cached, prompt)
        cache_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        fresh = prompt - cached
        return (fresh * self.input_per_mtok + cached * cache_price + completion * self.output_per_mtok) / 1e6


def cost_of(agent: Any, prompt: int, completion: int, cached: int = 0) -> float | None:
    """The dollars ``prompt`` (``cached`` of them from the server's cache) and ``completion`` tokens of
    ``agent`` cost; None when its price is unknown."""
    if prompt == 0 and completion == 0:
        return 0.0
    price = agent_price(agent)
    return None if price is None else price.cost(prompt, completion, cached)


def cost_estimate(agent: Any) -> float:
    """Dollars an attempt (or a further model call) of ``agent`` may cost, reserved against a cost budget:
    a sim agent's configured tokens at its price, else its token estimate all at the dearer of its input and
    output prices. 0 when its price is unknown: such spending is neither reserved nor counted."""
    tokens = agent.token_estimate()
    price = agent_price(agent) if tokens else None
    if price is None:
        return 0.0
    configured = getattr(agent, "tokens", None)
    if configured is not None and sum(configured) >= tokens:
        return price.cost(*configured)
    return tokens * max(price.input_per_mtok, price.output_per_mtok) / 1e6


def agent_price(agent: Any) -> Price | None:
    """The agent's own price, else (an ``llm`` agent) its model's in genai-prices; None if neither is known."""
    own: Price | None = getattr(agent, "price", None)
    if own is not None:
        return own
    if getattr(agent, "kind", None) == "llm":
        return listed_price(agent.model, agent.base_url)
    return None


@functools.cache
def listed_price(model: str, base_url: str) -> Price | None:
    """The model's price in genai-prices' data (imported here only: it takes ~0.2 s), per million tokens."""
    from genai_prices import Usage, calc_price

    million = 1_000_000
    try:  # by the endpoint's provider only: a self-hosted model never gets a cloud provider's price
        inp = calc_price(Usage(input_tokens=million, output_tokens=0), model, provider_api_url=base_url)
        out = calc_price(Usage(input_tokens=0, output_tokens=million), model, provider_api_url=base_url)
        cache = calc_price(Usage(input_tokens=million, cache_read_tokens=million), model, provider_api_url=base_url)
    except LookupError:
        return None
    return Price(
        input_per_mtok=float(inp.total_price),
        output_per_mtok=float(out.total_price),
        cached_input_per_mtok=float(cache.total_price),
    )
