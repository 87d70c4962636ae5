"""Costs in dollars: every model call priced (the agent's own price, else genai-prices), unknown never zero."""

from __future__ import annotations

import asyncio

import pytest

from core import RunStatus, validate_plan
from core.model.plan import LlmAgent
from core.model.pricing import cost_of, listed_price
from tests.chat_server import completion
from tests.core.helpers import start, wait_event
from tests.core.test_llm_tools import asks
from tests.fixtures.tools import SKILLS


def priced_plan(server, **llm) -> object:
    agent = {"kind": "llm", "base_url": server.url, "model": "m", "timeout_s": 5, "tools": ["read_file"], **llm}
    return validate_plan(
        {
            "skills": SKILLS,
            "agents": {
                "writer": agent,
                "sim": {
                    "kind": "sim",
                    "latency_ms": 0,
                    "tokens": [1000, 500],
                    "price": {"input_per_mtok": 3, "output_per_mtok": 15},
                },
            },
            "default_agent": "sim",
            "steps": [{"key": "tidy", "agent": "writer"}, {"key": "note"}],
        }
    )


async def test_every_model_call_is_priced_with_the_agents_own_price(orch, server):
    server.reply(body=asks(("c1", "read_file", {"path": "a"}), usage=(1_000_000, 0)))
    server.reply(body=completion("done", (0, 500_000)))
    plan = priced_plan(server, price={"input_per_mtok": 2.5, "output_per_mtok": 10})
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    steps = {s["key"]: s for s in snap["steps"]}
    assert steps["tidy"]["cost_usd"] == pytest.approx(2.5 + 5.0)  # turn 1: 1M in; turn 2: 0.5M out
    assert steps["note"]["cost_usd"] == pytest.approx((1000 * 3 + 500 * 15) / 1e6)  # a sim with a price
    assert snap["run"]["cost_usd"] == pytest.approx(7.5 + 0.0105) and snap["run"]["unpriced_steps"] == 0
    chats = [s["cost_usd"] for s in snap["spans"] if s["kind"] == "chat"]
    assert chats == [pytest.approx(2.5), pytest.approx(5.0)]
    attempt = next(s for s in snap["spans"] if s["kind"] == "attempt" and s["step"] == "tidy")
    assert attempt["cost_usd"] == pytest.approx(7.5)
    assert snap["agents"]["writer"]["cost_usd"] == pytest.approx(7.5)
    ended = next(e for e in snap["events"] if e["type"] == "step_succeeded" and e["step"] == "tidy")
    assert ended["payload"]["tokens"]["cost_usd"] == pytest.approx(7.5)
    exported = (await orch.export_otlp(run_id))["resourceSpans"][0]["scopeSpans"][0]["spans"]
    tidy = next(s for s in exported if s["name"] == "invoke_agent writer")
    assert {"key": "loopdeck.cost_usd", "value": {"doubleValue": pytest.approx(7.5)}} in tidy["attributes"]
    listed = next(r for r in await orch.runs() if r["id"] == run_id)
    assert listed["cost_usd"] == pytest.approx(7.5105)


async def test_a_model_with_no_known_price_costs_unknown_not_zero(orch, server):
    server.reply(body=completion("done", (100, 20)))
    run_id, task = await start(orch, priced_plan(server))  # a loopback server: genai-prices knows no provider there
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    steps = {s["key"]: s for s in snap["steps"]}
    assert steps["tidy"]["cost_usd"] is None and steps["tidy"]["tokens"]["total"] == 120
    assert snap["run"]["unpriced_steps"] == 1
    assert snap["run"]["cost_usd"] == pytest.approx(0.0105)  # what is known: the priced sim step
    assert snap["agents"]["writer"]["cost_usd"] is None and snap["agents"]["writer"]["unpriced_attempts"] == 1


def test_genai_prices_prices_a_listed_model_by_its_endpoints_provider_and_never_a_local_one():
    hosted = LlmAgent(kind="llm", base_url="https://api.openai.com/v1", model="gpt-4o-mini")
    local = LlmAgent(kind="llm", base_url="http://localhost:11434/v1", model="gpt-4o-mini")
    price = listed_price(hosted.model, hosted.base_url)
    assert price is not None and 0 < price.input_per_mtok < price.output_per_mtok
    assert cost_of(hosted, 2_000_000, 1_000_000) == pytest.approx(2 * price.input_per_mtok + price.output_per_mtok)
    assert cost_of(local, 10, 10) is None and cost_of(local, 0, 0) == 0.0
    own = LlmAgent.model_validate({**local.model_dump(), "price": {"input_per_mtok": 1, "output_per_mtok": 1}})
    assert cost_of(own, 500_000, 500_000) == pytest.approx(1.0)  # the agent's own price wins


def dollar_plan(budget: float, on_exhausted: str) -> object:
    """Four parallel steps of $0.0105 each (1,000 + 500 tokens at $3 / $15 per million)."""
    sim = {
        "kind": "sim",
        "latency_ms": 20,
        "tokens": [1000, 500],
        "price": {"input_per_mtok": 3, "output_per_mtok": 15},
    }
    return validate_plan(
        {
            "agents": {"sim": sim},
            "policy": {"cost_budget_usd": budget, "on_budget_exhausted": on_exhausted, "max_concurrency": 4},
            "steps": [{"key": k} for k in "abcd"],
        }
    )


async def test_parallel_steps_reserve_dollars_so_the_run_stops_inside_its_cost_budget(orch):
    run_id, task = await start(orch, dollar_plan(0.03, "fail"))
    assert await asyncio.wait_for(task, 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    # all four were ready at once; only two fit ($0.021), a third would need $0.0315
    assert sorted(s["status"] for s in snap["steps"]) == ["skipped", "skipped", "succeeded", "succeeded"]
    assert snap["run"]["cost_usd"] == pytest.approx(0.021) and snap["run"]["cost_budget_usd"] == 0.03
    assert "cost budget $0.03 exhausted: $0.0210 spent" in snap["run"]["reason"]


async def test_a_run_paused_on_its_cost_budget_continues_when_it_is_raised(orch):
    run_id, task = await start(orch, dollar_plan(0.03, "pause"))
    await wait_event(orch, run_id, "budget_exhausted")
    run = (await orch.snapshot(run_id))["run"]
    assert run["status"] == "waiting_user" and f"loopdeck budget {run_id} --usd DOLLARS" in run["reason"]
    await orch.set_budget(run_id, 1.0, usd=True, user="ann")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["cost_usd"] == pytest.approx(0.042) and snap["run"]["cost_budget_usd"] == 1.0
    changed = next(e for e in snap["events"] if e["type"] == "budget_changed")
    assert changed["payload"] == {"from": 0.03, "to": 1.0, "unit": "usd", "user": "ann"}


async def test_prompt_tokens_read_from_the_cache_are_priced_at_the_cached_input_price(orch, server):
    body = completion("done", (1_000_000, 0))
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 400_000}
    server.reply(body=body)
    plan = priced_plan(server, price={"input_per_mtok": 2, "output_per_mtok": 8, "cached_input_per_mtok": 0.5})
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    tidy = next(s for s in (await orch.snapshot(run_id))["steps"] if s["key"] == "tidy")
    assert tidy["cost_usd"] == pytest.approx(0.6 * 2 + 0.4 * 0.5)  # 600k fresh, 400k from the cache
    assert tidy["tokens"]["prompt"] == 1_000_000
