"""The tree's row labels (tui/dashboard/widgets/dag_tree.py): made as one string and its spans, they are
the ``Text`` Rich assembles part by part, span for span."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from tui.dashboard.viewmodel import StepView
from tui.dashboard.widgets.dag_tree import GLYPH, assembled, step_label
from tui.text.literal import clean

PART = st.tuples(st.text(max_size=6).map(clean), st.sampled_from(["", "dim", "bold italic"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(PART, max_size=8))
def test_a_label_is_the_text_rich_assembles(parts):
    assert assembled(parts) == Text.assemble(*parts)


STEPS = st.builds(
    StepView,
    key=st.text(max_size=8),  # (control characters included: shown as visible escapes)
    agent=st.text(max_size=5),
    status=st.sampled_from([*GLYPH, "odd"]),
    attempts=st.integers(0, 3),
    tokens=st.integers(0, 10**7),
    cost_usd=st.none() | st.floats(0, 10, allow_nan=False),
    started_at=st.none() | st.floats(0, 100, allow_nan=False),
    ended_at=st.none() | st.floats(0, 200, allow_nan=False),
    rating=st.sampled_from([None, "up", "down"]),
)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.booleans(), st.booleans(), st.none() | st.text(max_size=6))
def test_a_steps_row_shows_its_key_and_agent_with_escapes_made_visible(step, join, then, hold):
    row = step_label(step, 300.0, join=join, then=then, hold=hold)
    assert "\x1b" not in row.plain and "\x9b" not in row.plain
    assert row.plain.startswith(("↳ " if then else "") + GLYPH.get(step.status, "?") + " " + clean(step.key))
    assert join or clean(step.agent) in row.plain
