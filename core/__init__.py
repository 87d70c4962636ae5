"""loopdeck's engine: plans, the controller, the store, the event bus.

This module is the public API; every other module in ``core`` is private.

    async with await Orchestrator.open("sqlite+aiosqlite:///runs.db") as orch:
        run_id = await orch.create_run(load_plan("plan.yaml"))
        status = await orch.drive(run_id)

Names are loaded on first use (PEP 562), so a command that needs the store
never pays for the planner, the engine or pydantic models it does not touch:
``loopdeck --help`` starts in a fraction of the time a full import takes.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from core._version import __version__

# a library logs; the front end decides where to (never Python's last-resort handler, which prints tracebacks)
logging.getLogger("loopdeck").addHandler(logging.NullHandler())

# public name -> the module that defines it (``limits`` is a module of its own)
_EXPORTS: dict[str, str] = {
    "ApprovalRule": "core.model.tools",
    "PLANNER_ENV": "core.planner",
    "PLAN_REVIEW_EVENTS": "core.model.events",
    "RUN_STATUS_EVENTS": "core.model.events",
    "STEP_STATUS_AFTER": "core.model.events",
    "AgentError": "core.errors",
    "AttemptFailed": "core.executors",
    "BadInput": "core.errors",
    "CommandTimeout": "core.errors",
    "Delivery": "core.orchestrator",
    "Event": "core.model.events",
    "EventBus": "core.engine.bus",
    "EventType": "core.model.events",
    "Gap": "core.model.events",
    "LeaseHeld": "core.errors",
    "LeaseLost": "core.errors",
    "LoopdeckError": "core.errors",
    "Orchestrator": "core.orchestrator",
    "Plan": "core.model.plan",
    "PlanError": "core.errors",
    "PlanIssue": "core.errors",
    "PlanResult": "core.planner",
    "Policy": "core.model.policy",
    "Result": "core.executors",
    "RunNotFound": "core.errors",
    "RunProjection": "core.model.projection",
    "CallProjection": "core.model.projection",
    "RunRecord": "core.store.records",
    "RunResult": "core.model.result",
    "RunStatus": "core.model.states",
    "Skill": "core.model.skills",
    "SpanRecord": "core.store.records",
    "StaleWrite": "core.errors",
    "StepCall": "core.executors",
    "StepNotFound": "core.errors",
    "CallNotFound": "core.errors",
    "StepProjection": "core.model.projection",
    "StepRecord": "core.store.records",
    "ToolCallRecord": "core.store.records",
    "tool": "core.tools",
    "describe_tools": "core.tools",
    "check_arguments": "core.tools",
    "ToolError": "core.tools",
    "call_json": "core.views",
    "StepSpec": "core.model.plan",
    "StepStatus": "core.model.states",
    "StoreError": "core.errors",
    "Subscription": "core.engine.bus",
    "TransitionError": "core.errors",
    "Usage": "core.executors",
    "Worker": "core.worker",
    "WorkerStats": "core.worker",
    "available_skills": "core.model.skills",
    "check_token_budget": "core.engine.budget",
    "default_agents_file": "core.planner",
    "default_user": "core.orchestrator",
    "demo_plan": "core.demo",
    "display_url": "core.config",
    "dumps": "core.values",
    "iso": "core.model.events",
    "limits": "core.limits",
    "load_base": "core.planner",
    "load_document": "core.values",
    "load_plan": "core.model.plan",
    "load_text": "core.values",
    "mask_urls": "core.config",
    "parse_cost_budget": "core.engine.budget",
    "parse_json": "core.values",
    "parse_plan_text": "core.model.plan",
    "parse_token_budget": "core.engine.budget",
    "plan_goal": "core.planner",
    "plan_json_schema": "core.model.plan",
    "plan_to_yaml": "core.planner",
    "planner_agent": "core.planner",
    "readable": "core.model.plan",
    "resolve_db_url": "core.config",
    "theme_setting": "core.config",
    "validate_plan": "core.model.plan",
    "worker_json": "core.views",
    "nested_runs": "core.views",
    "BUILTIN_TOOLS": "core.tools.builtin",
    "Settings": "core.settings",
    "load_settings": "core.settings",
    "effective_settings": "core.provenance",
    "resolve_plan": "core.settings",
    "Profile": "core.model.profile",
    "Template": "core.templates",
    "available_templates": "core.templates",
    "template": "core.templates",
    "parse_plan_data": "core.model.plan",
    "read_plan_data": "core.model.plan",
}

if TYPE_CHECKING:  # what type checkers and import-linter see: the same names, imported eagerly
    from core import limits
    from core.config import display_url, mask_urls, resolve_db_url
    from core.demo import demo_plan
    from core.engine.budget import check_token_budget, parse_cost_budget, parse_token_budget
    from core.engine.bus import EventBus, Subscription
    from core.errors import (
        AgentError,
        BadInput,
        CallNotFound,
        CommandTimeout,
        LeaseHeld,
        LeaseLost,
        LoopdeckError,
        PlanError,
        PlanIssue,
        RunNotFound,
        StaleWrite,
        StepNotFound,
        StoreError,
        TransitionError,
    )
    from core.executors import AttemptFailed, Result, StepCall, Usage
    from core.model.events import PLAN_REVIEW_EVENTS, RUN_STATUS_EVENTS, STEP_STATUS_AFTER, Event, EventType, Gap, iso
    from core.model.plan import (
        Plan,
        StepSpec,
        load_plan,
        parse_plan_data,
        parse_plan_text,
        plan_json_schema,
        read_plan_data,
        readable,
        validate_plan,
    )
    from core.model.policy import Policy
    from core.model.profile import Profile
    from core.model.projection import CallProjection, RunProjection, StepProjection
    from core.model.result import RunResult
    from core.model.skills import Skill, available_skills
    from core.model.states import RunStatus, StepStatus
    from core.model.tools import ApprovalRule
    from core.orchestrator import Delivery, Orchestrator, default_user
    from core.planner import (
        PLANNER_ENV,
        PlanResult,
        default_agents_file,
        load_base,
        plan_goal,
        plan_to_yaml,
        planner_agent,
    )
    from core.provenance import effective_settings
    from core.settings import Settings, load_settings, resolve_plan
    from core.store.records import RunRecord, SpanRecord, StepRecord, ToolCallRecord
    from core.templates import Template, available_templates, template
    from core.tools import ToolError, check_arguments, describe_tools, tool
    from core.tools.builtin import BUILTIN_TOOLS
    from core.values import dumps, load_document, load_text, parse_json
    from core.views import call_json, nested_runs, worker_json
    from core.worker import Worker, WorkerStats


def __getattr__(name: str) -> Any:
    """Load a public name on first use, then keep it as an ordinary attribute."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module == f"core.{name}" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BUILTIN_TOOLS",
    "PLANNER_ENV",
    "PLAN_REVIEW_EVENTS",
    "RUN_STATUS_EVENTS",
    "STEP_STATUS_AFTER",
    "AgentError",
    "ApprovalRule",
    "AttemptFailed",
    "BadInput",
    "CallNotFound",
    "CallProjection",
    "CommandTimeout",
    "Delivery",
    "Event",
    "EventBus",
    "EventType",
    "Gap",
    "LeaseHeld",
    "LeaseLost",
    "LoopdeckError",
    "Orchestrator",
    "Plan",
    "PlanError",
    "PlanIssue",
    "PlanResult",
    "Policy",
    "Profile",
    "Result",
    "RunNotFound",
    "RunProjection",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "Settings",
    "Skill",
    "SpanRecord",
    "StaleWrite",
    "StepCall",
    "StepNotFound",
    "StepProjection",
    "StepRecord",
    "StepSpec",
    "StepStatus",
    "StoreError",
    "Subscription",
    "Template",
    "ToolCallRecord",
    "ToolError",
    "TransitionError",
    "Usage",
    "Worker",
    "WorkerStats",
    "__version__",
    "available_skills",
    "available_templates",
    "call_json",
    "check_arguments",
    "check_token_budget",
    "default_agents_file",
    "default_user",
    "demo_plan",
    "describe_tools",
    "display_url",
    "dumps",
    "effective_settings",
    "iso",
    "limits",
    "load_base",
    "load_document",
    "load_plan",
    "load_settings",
    "load_text",
    "mask_urls",
    "nested_runs",
    "parse_cost_budget",
    "parse_json",
    "parse_plan_data",
    "parse_plan_text",
    "parse_token_budget",
    "plan_goal",
    "plan_json_schema",
    "plan_to_yaml",
    "planner_agent",
    "read_plan_data",
    "readable",
    "resolve_db_url",
    "resolve_plan",
    "template",
    "theme_setting",
    "tool",
    "validate_plan",
    "worker_json",
]
