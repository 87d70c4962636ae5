"""The database tables at the newest schema version (migrations build them step by step).

Timestamps are float seconds since the epoch (UTC): compact, fast to compare,
rendered as ISO 8601 with microseconds at the edges.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("goal", Text, nullable=False, default=""),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("token_budget", Integer),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("created_by", String(128)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("ended_at", Float),
    # revision 0002: the lease that makes exactly one process drive a run
    Column("lock_owner", String(64)),
    Column("lock_host", String(255)),
    Column("lock_pid", Integer),
    Column("locked_until", Float),
    # revision 0004: a replan an agent proposed, waiting for the operator's review
    Column("proposal_json", Text),
    # revision 0008: what holds a live run until an operator acts ("budget"), remembered for offline actions
    Column("hold", String(32)),
    # revision 0009: the run's result once it ended (model.result.RunResult as JSON); NULL before
    Column("result_json", Text),
    # revision 0012: dollars its priced spending cost (the unpriced steps have cost_usd NULL)
    Column("cost_usd", Float, default=0.0),
    Column("cost_budget_usd", Float),  # policy.cost_budget_usd, raised by `loopdeck budget --usd`
    # revision 0013: when the review of its plan times out, while it waits (NULL: never)
    Column("deadline", Float),
    # revision 0014: the harness profile it was created with and the values that profile resolved to
    Column("profile_json", Text),
    # ... and the run and step a child run (a sub_agent step's plan) runs for; NULL: a top-level run
    Column("parent_run_id", String(32)),
    Column("parent_step", String(128)),
)

Index("ix_runs_parent", runs.c.parent_run_id)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("idx", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("type", String(32), nullable=False),
    Column("agent", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("input_json", Text),
    Column("output_json", Text),
    Column("error", Text),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("not_before", Float),
    Column("approved_by", String(128)),
    Column("started_at", Float),
    Column("ended_at", Float),
    # revision 0012: dollars it cost; NULL: it spent tokens no price is known for
    Column("cost_usd", Float, default=0.0),
    # revision 0013: when its approval gate times out, while it waits (NULL: never)
    Column("deadline", Float),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("step_key", String(128)),
    Column("type", String(64), nullable=False),
    Column("payload_json", Text, nullable=False, default="{}"),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_events_run_id_id", events.c.run_id, events.c.id)

# revision 0002: actions from other processes, applied by the process that drives the run
commands = Table(
    "commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload_json", Text, nullable=False, default="{}"),
    Column("created_by", String(128)),
    Column("created_at", Float, nullable=False),
    Column("state", String(16), nullable=False, default="queued"),
    Column("result", Text),
    Column("answered_at", Float),
    sqlite_autoincrement=True,
)
Index("ix_commands_run_id_state", commands.c.run_id, commands.c.state)

# revision 0003: one span per step attempt, operator feedback, circuit breakers
spans = Table(
    "spans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("step_key", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("agent", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("error", Text),
    # revision 0011: an attempt's span, or one of its children: a chat turn or a tool call
    Column("kind", String(16), nullable=False, server_default="attempt"),
    Column("name", String(200)),  # chat: the model asked; tool: the tool
    Column("turn", Integer),
    Column("attributes_json", Text),  # what else the span says (GenAI attributes), as JSON
    # revision 0012: dollars (NULL: unknown)
    Column("cost_usd", Float),
)
Index("ix_spans_run_id", spans.c.run_id, spans.c.started_at)
Index("ix_spans_agent", spans.c.agent)

# revision 0010: one record per tool call an agent asks for (model.tools: the call's state machine)
tool_calls = Table(
    "tool_calls",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("id", String(200), primary_key=True),  # STEP.ATTEMPT.TURN.INDEX, loopdeck's own
    Column("step_key", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("turn", Integer, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("tool", String(200), nullable=False),
    Column("server", String(64)),
    Column("model_call_id", String(200)),  # the model's id for it, used only to answer the model
    Column("text", Text),  # what the model said with the call
    Column("arguments_json", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("result_json", Text),
    Column("error", Text),
    Column("decided_by", String(128)),
    Column("rule", Text),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # revision 0013: when its approval times out, while it waits (NULL: never)
    Column("deadline", Float),
)
Index("ix_tool_calls_step", tool_calls.c.run_id, tool_calls.c.step_key, tool_calls.c.attempt)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("step_key", String(128), nullable=False),
    Column("agent", String(128), nullable=False),
    Column("rating", String(8), nullable=False),
    Column("comment", Text),
    Column("category", String(64)),
    Column("created_by", String(128)),
    Column("created_at", Float, nullable=False),
)
Index("ix_feedback_run_id", feedback.c.run_id)
Index("ix_feedback_agent", feedback.c.agent)

# revision 0007: keyed by target (what an agent calls), not by agent name
breakers = Table(
    "breakers",
    metadata,
    Column("target", String(512), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("opened_at", Float),
    Column("updated_at", Float, nullable=False),
)

# revision 0005: a pool of workers sharing the database, agent slots held across processes
workers = Table(
    "workers",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("runs_claimed", Integer, nullable=False, default=0, server_default="0"),  # as migration 0005 made it
)

agent_slots = Table(
    "agent_slots",
    metadata,
    Column("agent", String(128), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("holder", String(128)),  # "<owner>:<run id>" of the controller using it, or NULL when free
    Column("run_id", String(32)),
    Column("expires_at", Float),  # renewed by the holder's heartbeat; past it, the slot is free again
)
Index("ix_runs_claimable", runs.c.status, runs.c.locked_until)

# revision 0006: plans apart from the run rows that are updated at every step
run_plans = Table(
    "run_plans",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("plan_json", Text, nullable=False),
)
