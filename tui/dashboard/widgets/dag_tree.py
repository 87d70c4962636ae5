"""The live DAG tree: keyed nodes whose labels are updated in place.

A step with several dependencies appears under each of them: in full under
its first dependency, as a "join" leaf under the others, so it expands in
one place. The tree is built once per plan; afterwards only the labels of
changed steps are set, so the operator's cursor, scroll and collapsed
branches never move.

Deep plans stay readable: a straight chain (a step whose only dependent
depends on it alone) continues on the next line at the same level,
marked ``↳``, so only branches indent (2 columns a level); and nesting stops at
``MAX_NESTING`` levels, deeper steps continuing at that level, marked ``↳``.
A 60-step chain is a column of 60 rows, and a 20,000-step one is not 20,000
levels deep. The build is a loop over a stack, never a recursion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.cells import cell_len
from rich.text import Span, Text, TextType
from textual import events
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.dashboard.palette import status_style
from tui.dashboard.viewmodel import RunView, StepView
from tui.text.literal import clean
from tui.text.money import dollars

MAX_NESTING = 12
FULL, JOIN, THEN = "full", "join", "then"  # how a step's node shows it: in full, as a join leaf, as a continuation

GLYPH = {
    "pending": "○",
    "running": "◐",
    "waiting_user": "⏸",
    "succeeded": "●",
    "failed": "✗",
    "skipped": "⊘",
    "rejected": "⊗",
}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def step_label(step: StepView, now: float, join: bool = False, then: bool = False, hold: str | None = None) -> Text:
    """A step's row: status glyph, key, attempt, duration, tokens, cost, agent, rating, and why it waits
    (``hold``: ``RunView.launch_hold``)."""
    parts = [
        ("↳ " if then else "", "dim"),
        (GLYPH.get(step.status, "?") + " ", status_style(step.status)),
        (clean(step.key), "bold" if step.status == "running" else ""),
    ]
    if join:
        parts.append((" ⤝ join", "dim italic"))
        return assembled(parts)
    if step.attempts > 1:
        parts.append((f" #{step.attempts}", "note"))
    dur = duration_text(step.duration(now))
    if dur:
        parts.append((f" {dur}", "dim"))
    if step.tokens:
        parts.append((f" {step.tokens:,}t", "dim"))
    if step.cost_usd or (step.cost_usd is None and step.tokens):
        parts.append((f" {dollars(step.cost_usd)}", "dim"))
    parts += [(" ", ""), (clean(step.agent), "italic dim")]
    if step.rating:
        parts.append((" 👍" if step.rating == "up" else " 👎", ""))
    if hold:
        parts += [(" ⏳ ", "note"), (clean(hold), "note")]
    return assembled(parts)


def assembled(parts: list[tuple[str, str]]) -> Text:
    """``Text.assemble(*parts)`` of clean one-line parts, span for span (a test compares them), made as one
    string and its spans: Rich appends part by part, and a 20,000-step tree's labels took 0.24 s so."""
    spans, end = [], 0
    for part, style in parts:
        if style and part:
            spans.append(Span(end, end + len(part), style))
        end += len(part)
    return Text("".join(part for part, _ in parts), spans=spans)


def label(view: RunView, step: StepView, now: float, mode: str = FULL) -> Text:
    return step_label(step, now, join=mode == JOIN, then=mode == THEN, hold=view.launch_hold(step))


class DagTree(Tree[str]):
    """Tree of steps; node data is the step key."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(Text("steps"), **kwargs)  # type: ignore[arg-type]
        self.show_root = False
        self.guide_depth = 2
        self._step_nodes: dict[str, list[tuple[TreeNode[str], str]]] = {}
        self._stale: set[str] = set()  # changed while out of sight: relabelled when scrolled into view

    def build(self, view: RunView, now: float, filter_text: str = "") -> None:
        """(Re)build the tree for the run's plan; with a filter, a flat list of the matching steps."""
        self.clear()
        self._step_nodes.clear()
        self._stale.clear()
        with self._invalidated_once():
            self._build_nodes(view, view.clock_for_steps(now), filter_text)

    @contextlib.contextmanager
    def _invalidated_once(self) -> Iterator[None]:
        """Textual invalidates the whole tree after each node added (a layout refresh each: a third of
        building a 20,000-step tree); while nodes are added here, it is invalidated once, at the end.

        Shadows Tree's private ``_invalidate`` (Textual is pinned exactly; the dashboard's tests cover it).
        """
        self._invalidate = lambda: None  # type: ignore[method-assign]
        try:
            yield
        finally:
            del self._invalidate
            self._invalidate()

    def _build_nodes(self, view: RunView, now: float, filter_text: str) -> None:
        if filter_text:
            needle = filter_text.lower()
            for step in view.steps.values():
                if needle in step.key.lower() or needle in step.status.lower() or needle in step.agent.lower():
                    self._add(self.root, step.key, label(view, step, now), FULL, leaf=True)
            self.root.expand()
            return
        children: dict[str, list[str]] = {}
        for step in view.steps.values():
            for dep in step.depends_on:
                if dep in view.steps:
                    children.setdefault(dep, []).append(step.key)
        home = {key: next((d for d in step.depends_on if d in view.steps), None) for key, step in view.steps.items()}
        # (parent node, step key, nesting level, how to show it); each step is shown in full once, under its home
        stack = [(self.root, key, 0, FULL) for key in reversed(list(view.steps)) if home[key] is None]
        while stack:
            parent, key, level, mode = stack.pop()
            step = view.steps[key]
            if mode == JOIN:
                self._add(parent, key, label(view, step, now, JOIN), JOIN, leaf=True)
                continue
            kids = children.get(key, [])
            chain = len(kids) == 1 and view.steps[kids[0]].depends_on == [key]  # a straight chain: same level
            deeper = level + 1 < MAX_NESTING and not chain
            node = self._add(parent, key, label(view, step, now, mode), mode, leaf=not (kids and deeper))
            below, kid_level, kid_mode = (node, level + 1, FULL) if deeper else (parent, level, THEN)
            for kid in reversed(kids):
                stack.append((below, kid, kid_level, kid_mode if home[kid] == key else JOIN))
        self.root.expand()

    def process_label(self, label: TextType) -> Text:
        """A label built here as one line is taken as it is (Textual's own splits every label into lines, a
        copy each: a third of building a 20,000-step tree); anything else as Textual does."""
        if isinstance(label, Text) and "\n" not in label.plain:
            return label
        return super().process_label(label)

    def notify_style_update(self) -> None:
        """A style changed (the focus came or went, a theme): the drawn lines go, the tree's lines stay.
        Textual's Tree builds all its lines again (a 20,000-step tree: 40–100 ms) at every focus change;
        their order and widths do not depend on styles. (Overrides the pinned Tree; a test covers it.)"""
        super(Tree, self).notify_style_update()
        self._redraw()

    def _on_resize(self, event: events.Resize) -> None:
        """A new size: as a style change (Tree's own handler, skipped, built every line again). A tree with
        no lines is left to it: its scrollable width is the widget's own."""
        if self._tree_lines_cached:
            event.prevent_default()
            self._line_cache.grow(event.size.height)
            self._redraw()

    def _redraw(self) -> None:
        self._line_cache.clear()
        self._updates += 1  # (part of each drawn line's cache key)
        self.refresh()

    def get_label_width(self, node: TreeNode[str]) -> int:
        """The width ``render_label`` would measure, without rendering the label (Textual's documented
        override: it renders every label of the tree to find the widest each time its lines are rebuilt, at
        mount, on a resize, on a branch folded: most of a 20,000-step tree's opening)."""
        width = node.label.cell_len
        if node.allow_expand:
            width += cell_len(self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE)
        return width

    def _add(self, parent: TreeNode[str], key: str, label: Text, mode: str, leaf: bool) -> TreeNode[str]:
        node = parent.add_leaf(label, data=key) if leaf else parent.add(label, data=key, expand=True)
        self._step_nodes.setdefault(key, []).append((node, mode))
        return node

    def refresh_steps(self, view: RunView, keys: set[str], now: float) -> None:
        """Relabel the given steps where they are visible; the rest when they come into view.

        Setting a label costs a re-render of its line, so a 5,000-step run
        relabels only the few dozen lines on screen, however many steps changed.
        """
        now = view.clock_for_steps(now)
        pending = self._stale | keys
        in_view = pending & self.visible_keys()
        self._stale = pending - in_view
        for key in in_view:
            step = view.steps.get(key)
            if step is None:
                continue
            for node, mode in self._step_nodes.get(key, []):
                node.set_label(label(view, step, now, mode))

    def visible_keys(self) -> set[str]:
        """The steps on the lines in view (a few dozen, whatever the plan's size).

        Reads Tree's private line list (Textual is pinned exactly; the dashboard's tests cover it): asking
        each changed step's node for its line instead costs thousands of lookups a tick on a busy run.
        """
        top = int(self.scroll_y)
        lines = self._tree_lines[top : top + self.size.height]
        return {line.node.data for line in lines if line.node.data is not None}

    def node_of(self, key: str) -> TreeNode[str] | None:
        """The node that shows the step in full (a join shows it again elsewhere)."""
        nodes = self._step_nodes.get(key)
        return nodes[0][0] if nodes else None

    def follow(self, view: RunView) -> None:
        """Move the cursor to the first running step (else the first waiting one), scrolling it into view."""
        active = next((k for k, s in view.steps.items() if s.status == "running"), None)
        active = active or next((k for k, s in view.steps.items() if s.status == "waiting_user"), None)
        node = self.node_of(active or "")
        if node is not None and self.highlighted_key != active:
            self.move_cursor(node)

    def running_keys(self, view: RunView) -> set[str]:
        return view.keys_in("running")

    @property
    def highlighted_key(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None
