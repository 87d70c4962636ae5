"""loopdeck's engine: plans, the controller, the store, the event bus.

This module is the public API; every other module in ``core`` is private.

    async with await Orchestrator.open("sqlite+aiosqlite:///runs.db") as orch:
        run_id = await orch.create_run(load_plan("plan.yaml"))
        status = await orch.drive(run_id)
"""

import logging

from core import limits
from core._version import __version__
from core.config import display_url, mask_urls, resolve_db_url
from core.demo import demo_plan
from core.engine.budget import check_token_budget, parse_token_budget
from core.engine.bus import EventBus, Subscription
from core.errors import (
    AgentError,
    BadInput,
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
    Policy,
    StepSpec,
    load_plan,
    parse_plan_text,
    plan_json_schema,
    readable,
    validate_plan,
)
from core.model.projection import RunProjection, StepProjection
from core.model.result import RunResult
from core.model.skills import Skill, available_skills
from core.model.states import RunStatus, StepStatus
from core.orchestrator import Delivery, Orchestrator, default_user
from core.planner import PLANNER_ENV, PlanResult, default_agents_file, load_base, plan_goal, plan_to_yaml, planner_agent
from core.store.records import RunRecord, SpanRecord, StepRecord
from core.values import dumps, load_document, load_text, parse_json
from core.views import worker_json
from core.worker import Worker, WorkerStats

# a library logs; the front end decides where to (never Python's last-resort handler, which prints tracebacks)
logging.getLogger("loopdeck").addHandler(logging.NullHandler())

__all__ = [
    "PLANNER_ENV",
    "PLAN_REVIEW_EVENTS",
    "RUN_STATUS_EVENTS",
    "STEP_STATUS_AFTER",
    "AgentError",
    "AttemptFailed",
    "BadInput",
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
    "Result",
    "RunNotFound",
    "RunProjection",
    "RunRecord",
    "RunResult",
    "RunStatus",
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
    "TransitionError",
    "Usage",
    "Worker",
    "WorkerStats",
    "__version__",
    "available_skills",
    "check_token_budget",
    "default_agents_file",
    "default_user",
    "demo_plan",
    "display_url",
    "dumps",
    "iso",
    "limits",
    "load_base",
    "load_document",
    "load_plan",
    "load_text",
    "mask_urls",
    "parse_json",
    "parse_plan_text",
    "parse_token_budget",
    "plan_goal",
    "plan_json_schema",
    "plan_to_yaml",
    "planner_agent",
    "readable",
    "resolve_db_url",
    "validate_plan",
    "worker_json",
]
