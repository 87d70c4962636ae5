"""Hostile plans: every number, depth and size is bounded, and refused with a located plan error.

Each case here once crashed validation with a traceback, hung it, or was
accepted and then broke the run (see the hardening issue); now each is a
``PlanError`` that says where and why, in well under a second.
"""

from __future__ import annotations

import collections
import datetime
import enum
import json
import random
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import PlanError, parse_plan_text, validate_plan
from core.engine.transitions import backoff_delay
from core.limits import MAX_DEPTH
from core.model.policy import Backoff
from core.values import ValueProblem, _plainly_fine, _walk_document, check_document, dumps, to_json_value

STEP = '{"key": "a"}'


def deep(n: int, inner: str = "1") -> str:
    return "[" * n + inner + "]" * n


def alias_bomb(levels: int, leaf: str = "x") -> str:
    """The billion laughs in YAML: each level refers to the one below nine times."""
    lines = ["a: &a [" + ", ".join([leaf] * 9) + "]"]
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    lines.append(f"steps: [{{key: s, input: *{chr(ord('a') + levels - 1)}}}]")
    return "\n".join(lines) + "\n"


HOSTILE: list[tuple[str, str, bool, str | tuple[str, ...], str | tuple[str, ...]]] = [
    # (name, text, json_only, location expected, words expected)
    ("100,000-deep JSON", '{"steps": ' + deep(100_000) + "}", True, "", f"deeper than {MAX_DEPTH} levels"),
    ("5,000-deep YAML", "steps: " + deep(5_000, "x") + "\n", False, ("", "line 1, column *"), ("depth", "deeper")),
    (
        "900-deep input",
        '{"steps": [{"key": "a", "input": ' + deep(900) + "}]}",
        True,
        "steps[0].input[0]*",
        "deeper than",
    ),
    ("a lone surrogate in the goal", '{"goal": "\\ud800", "steps": [' + STEP + "]}", True, "goal", "lone surrogate"),
    (
        "a lone surrogate in an input",
        '{"steps": [{"key": "a", "input": {"t": "x\\udfff"}}]}',
        True,
        "steps[0].input.t",
        "not valid Unicode",
    ),
    ("an integer agent name", "agents: {1: {kind: sim}}\nsteps: [{key: a}]\n", False, "agents", "keys are text"),
    (
        "token_budget 1e29",
        '{"policy": {"token_budget": 1e29}, "steps": [' + STEP + "]}",
        True,
        "policy.token_budget",
        "too large",
    ),
    (
        "tokens [1e29, 1]",
        '{"agents": {"s": {"kind": "sim", "tokens": [1e29, 1]}}, "steps": [' + STEP + "]}",
        True,
        "agents.s.tokens[0]",
        "too large",
    ),
    (
        "latency .nan",
        "agents: {s: {kind: sim, latency_ms: .nan}}\nsteps: [{key: a}]\n",
        False,
        "agents.s.latency_ms",
        "not a finite number",
    ),
    (
        "latency .inf",
        "agents: {s: {kind: sim, latency_ms: .inf}}\nsteps: [{key: a}]\n",
        False,
        "agents.s.latency_ms",
        "not a finite number",
    ),
    ("NaN in JSON", '{"steps": [{"key": "a", "input": {"v": NaN}}]}', True, "steps[0].input.v", "not a finite number"),
    (
        "backoff factor 1e200",
        '{"policy": {"backoff": {"factor": 1e200}}, "steps": [' + STEP + "]}",
        True,
        "policy.backoff.factor",
        "less than or equal to 1000",
    ),
    (
        "a 30-digit integer",
        '{"steps": [{"key": "a", "input": 123456789012345678901234567890}]}',
        True,
        "steps[0].input",
        "larger than",
    ),
    (
        "max_concurrency 10**12",
        '{"policy": {"max_concurrency": 1000000000000}, "steps": [' + STEP + "]}",
        True,
        "policy.max_concurrency",
        "less than or equal to 10000",
    ),
    (
        "a timeout of a year",
        '{"steps": [{"key": "a", "timeout_s": 31536000}]}',
        True,
        "steps[0].timeout_s",
        "less than or equal to 604800",
    ),
    ("a self-referring YAML alias", "steps: &s [{key: a, input: *s}]\n", False, "steps[0].input", "refers to itself"),
    ("a YAML alias bomb (9 levels)", alias_bomb(9), False, "", "more than 1,000,000 values"),
    ("a small bomb of long strings", alias_bomb(5, "y" * 400), False, "", "more than 16,000,000 characters"),
    ("a 4 KB file that would store 2.6 MB", alias_bomb(4, "y" * 400), False, "", "at most 10× is accepted"),
    ("a 5,000-digit integer", '{"steps": [{"key": "a", "input": ' + "9" * 5000 + "}]}", True, "", "more digits"),
    ("a 5,000-digit YAML integer", "steps: [{key: a, input: " + "9" * 5000 + "}]\n", False, "", "more digits"),
]


@pytest.mark.parametrize("name,text,json_only,location,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_plan_is_a_located_plan_error_in_well_under_a_second(name, text, json_only, location, words):
    started = time.perf_counter()
    with pytest.raises(PlanError) as err:
        parse_plan_text(text, source="hostile", json_only=json_only)
    assert time.perf_counter() - started < 1.0
    issue = err.value.issues[0]
    locations = location if isinstance(location, tuple) else (location,)
    alternatives = words if isinstance(words, tuple) else (words,)
    assert any(
        issue.location == loc or (loc.endswith("*") and issue.location.startswith(loc[:-1])) for loc in locations
    )
    assert any(w in issue.message for w in alternatives), str(err.value)


def test_backoff_never_overflows_however_many_retries():
    rng = random.Random(1)
    assert backoff_delay(Backoff(base_s=1, factor=2, max_s=60, jitter=False), 1025, rng) == 60
    assert backoff_delay(Backoff(base_s=1, factor=1000, max_s=5, jitter=True), 1000, rng) <= 5


def test_a_document_is_measured_once_per_shared_node():
    shared = ["x"] * 10
    doc: object = shared
    for _ in range(8):  # 10**9 values once expanded, 80 objects in memory
        doc = [doc] * 10
    started = time.perf_counter()
    with pytest.raises(ValueProblem) as err:
        check_document({"steps": doc})
    assert "more than 1,000,000 values" in str(err.value) and time.perf_counter() - started < 0.5


def test_outputs_become_strict_json():
    out = to_json_value({"nan": float("nan"), "inf": float("-inf"), 1: (2, 3), "big": 10**30, "obj": object})
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["nan"] == "NaN" and out["inf"] == "-Infinity" and out["1"] == [2, 3] and out["big"] == str(10**30)
    with pytest.raises(ValueProblem):
        to_json_value(json.loads(deep(MAX_DEPTH + 5)))


def _standard(value):
    """What ``dumps(value, indent=2)`` wrote before orjson indented it: the standard library's encoder."""
    try:
        return json.dumps(value, allow_nan=False, default=str, indent=2)
    except ValueError:
        return json.dumps(to_json_value(value, depth_limit=4 * MAX_DEPTH), allow_nan=False, indent=2)


EXACT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.sampled_from(["\x7f", "\x1b[31m", "\u009b", "😀"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers() | st.booleans() | st.none(), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXACT)
def test_indented_json_is_the_standard_librarys_text_in_ascii(value):
    """orjson indents; the text is the standard encoder's, character for character (escapes, keys made text,
    integers past 64 bits, empty containers), and never holds a byte a terminal would act on."""
    text = dumps(value, indent=2)
    assert text == _standard(value)
    assert text.isascii() and "\x7f" not in text and "\x1b" not in text


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.floats() | st.integers(), lambda c: st.lists(c, max_size=3), max_leaves=10))
def test_indented_json_writes_every_number_as_the_standard_library_reads_it(value):
    """Floats may differ in their exponent's spelling (``1e-7``), never in value; NaN and infinities are text."""
    assert json.loads(dumps(value, indent=2)) == json.loads(_standard(value))


class Colour(enum.Enum):
    RED = 1


class Cost(float):  # (as a numpy number is)
    pass


Pair = collections.namedtuple("Pair", "x y")


def test_indented_json_falls_back_where_orjson_would_write_otherwise_or_cannot():
    """What orjson writes its own way (a named tuple, an enum, a float subclass, a key that is not text, an
    object made text) or cannot (an integer past 64 bits, a lone surrogate) is written by the standard
    library, character for character."""
    odd = [
        {"big": 2**70},
        ["\ud800"],
        {"nan": float("nan")},
        {"when": object},
        Pair(1, 2),
        [Colour.RED],
        {"cost": Cost(1.5)},
        {1e-7: "a float key", 1: "an int key"},
        {"id": uuid.UUID(int=5), "at": datetime.datetime(2026, 12, 1)},
    ]
    for value in odd:
        assert dumps(value, indent=2) == _standard(value)
    assert json.loads(dumps({"nan": float("nan")}, indent=2)) == {"nan": "NaN"}


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "{{steps.x.output}}", "a" * 200, "sim", "llm", "key"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "key",
                    "steps",
                    "agents",
                    "policy",
                    "kind",
                    "input",
                    "depends_on",
                    "agent",
                    "goal",
                    "latency_ms",
                    "tokens",
                    "backoff",
                    "factor",
                    "x",
                ]
            )
            | st.text(max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSONISH)
def test_any_document_validates_or_is_a_plan_error_never_another_exception(data):
    try:
        validate_plan(data)
    except PlanError as exc:
        assert exc.issues and all(isinstance(i.message, str) for i in exc.issues)


SHARED_OR_ODD = st.recursive(
    JSONISH | st.sampled_from([float("nan"), float("inf"), 2**63, -(2**63) - 1, (1, 2)]),
    lambda children: (
        st.lists(children, max_size=3).map(lambda xs: xs + xs[:1])  # the first child twice
        | st.dictionaries(st.integers(0, 3) | st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHARED_OR_ODD)
def test_the_quick_look_never_passes_a_document_the_full_walk_refuses(data):
    if _plainly_fine(data):
        _walk_document(data, "")  # raises on anything it refuses


def test_a_plan_takes_the_quick_look_and_odd_documents_the_full_walk():
    plan = {"steps": [{"key": f"s{i}", "depends_on": [f"s{i - 1}"] if i else []} for i in range(10_000)]}
    assert _plainly_fine(plan)
    shared = {"a": 1}
    for odd in ([shared, shared], {"x": float("nan")}, {"x": "\ud800"}, {1: "x"}, json.loads(deep(MAX_DEPTH + 1))):
        assert not _plainly_fine(odd)
