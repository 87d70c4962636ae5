"""The built-in tools: ``delegate`` and ``propose_steps``, the leader loop of the plugin loopdeck descends from.

An ``llm`` (or scripted ``sim``) agent is given them like any tool (``tools:
[delegate, propose_steps]``); each call is recorded and gated by the approval
rules like any other (neither is read-only, so by default an operator says
yes), and the engine carries it out (``engine.tool_calls``): ``delegate``
adds a ``sub_agent`` step to the live run (a replan, audited, refused when
``allow_replan`` is false, reviewed under ``plan_approval: required``) whose
child run hands the task to the agent named, and answers with its output;
``propose_steps`` proposes a replan of the run, as a step's ``replan`` output
does. These specs are all this module holds: carrying them out needs the run.
"""

from __future__ import annotations

from core.model.tools import ToolSpec

DELEGATE = ToolSpec(
    name="delegate",
    description=(
        "Hand a task to another agent of this run. It runs as a step of its own (a sub-agent with a child "
        "run), visible to the operator; this tool answers with that agent's output once it is done."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "agent": {"type": "string", "description": "the agent to hand the task to (an agent of this run)"},
            "task": {"type": "string", "minLength": 1, "description": "what to do, in a sentence or two"},
            "input": {"description": "what the agent works on (any JSON)"},
        },
        "required": ["agent", "task"],
        "additionalProperties": False,
    },
    idempotent=True,  # one step per call, named after the call: asked again after a crash, it waits on that step
)

PROPOSE_STEPS = ToolSpec(
    name="propose_steps",
    description=(
        "Propose a change to this run's plan: append steps, or replace the steps that have not started "
        "(replace_pending). Each step is {key, title?, agent?, input?, depends_on?, type?}. Answers whether it "
        "was applied, is waiting for the operator's review, or was refused (and why)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "mode": {"enum": ["append", "replace_pending"], "default": "append"},
            "steps": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        },
        "required": ["steps"],
        "additionalProperties": False,
    },
)

BUILTIN = {spec.name: spec for spec in (DELEGATE, PROPOSE_STEPS)}
BUILTIN_TOOLS = frozenset(BUILTIN)  # their names, for front ends (core's public API)


def delegated_key(call_id: str) -> str:
    """The step a ``delegate`` call adds: named after the call, so asking again finds it."""
    return f"{call_id}.delegate"
