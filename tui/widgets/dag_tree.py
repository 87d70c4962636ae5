"""The live DAG tree: keyed nodes whose labels are updated in place.

A step with several dependencies appears under each of them: in full under
its first dependency, as a "join" leaf under the others, so it expands in
one place. The tree is built once per plan; afterwards only the labels of
changed steps are set, so the operator's cursor, scroll and collapsed
branches never move.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..literal import literal
from ..viewmodel import RunView, StepView

GLYPH = {
    "pending": ("○", "dim"), "running": ("◐", "bold cyan"), "waiting_user": ("⏸", "bold yellow"),
    "succeeded": ("●", "green"), "failed": ("✗", "bold red"), "skipped": ("⊘", "dim"), "rejected": ("⊗", "red"),
}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def step_label(step: StepView, now: float, join: bool = False) -> Text:
    glyph, style = GLYPH.get(step.status, ("?", ""))
    text = Text.assemble((glyph + " ", style), literal(step.key, "bold" if step.status == "running" else ""))
    if join:
        text.append(" ⤝ join", "dim italic")
        return text
    if step.attempts > 1:
        text.append(f" #{step.attempts}", "yellow")
    dur = duration_text(step.duration(now))
    if dur:
        text.append(f" {dur}", "dim")
    if step.tokens:
        text.append(f" {step.tokens:,}t", "dim")
    text.append(" ")
    text.append_text(literal(step.agent, "italic dim"))
    if step.rating:
        text.append(" 👍" if step.rating == "up" else " 👎")
    return text


class DagTree(Tree[str]):
    """Tree of steps; node data is the step key."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(Text("steps"), **kwargs)  # type: ignore[arg-type]
        self.show_root = False
        self.guide_depth = 3
        self._step_nodes: dict[str, list[tuple[TreeNode[str], bool]]] = {}
        self._stale: set[str] = set()  # changed while out of sight: relabelled when scrolled into view

    def build(self, view: RunView, now: float, filter_text: str = "") -> None:
        """(Re)build the tree for the run's plan; with a filter, a flat list of the matching steps."""
        self.clear()
        self._step_nodes.clear()
        self._stale.clear()
        if filter_text:
            needle = filter_text.lower()
            for step in view.steps.values():
                if needle in step.key.lower() or needle in step.status.lower() or needle in step.agent.lower():
                    node = self.root.add_leaf(step_label(step, now), data=step.key)
                    self._step_nodes.setdefault(step.key, []).append((node, False))
            self.root.expand()
            return
        children: dict[str, list[str]] = {}
        for step in view.steps.values():
            for dep in step.depends_on:
                children.setdefault(dep, []).append(step.key)

        def add(parent: TreeNode[str], key: str, seen: set[str]) -> None:
            step = view.steps[key]
            home = step.depends_on[0] if step.depends_on else None
            is_join = parent is not self.root and parent.data != home
            if is_join or key in seen:
                node = parent.add_leaf(step_label(step, now, join=True), data=key)
                self._step_nodes.setdefault(key, []).append((node, True))
                return
            kids = children.get(key, [])
            node = parent.add(step_label(step, now), data=key, expand=True) if kids else parent.add_leaf(step_label(step, now), data=key)
            self._step_nodes.setdefault(key, []).append((node, False))
            for kid in kids:
                if kid in view.steps:
                    add(node, kid, seen | {key})

        for step in view.steps.values():
            if not step.depends_on or not any(d in view.steps for d in step.depends_on):
                add(self.root, step.key, set())
        self.root.expand()

    def refresh_steps(self, view: RunView, keys: set[str], now: float) -> None:
        """Relabel the given steps where they are visible; the rest when they come into view.

        Setting a label costs a re-render of its line, so a 5,000-step run
        relabels only the few dozen lines on screen, however many steps changed.
        """
        top = int(self.scroll_y)
        bottom = top + self.size.height
        pending = self._stale | keys
        self._stale = set()
        for key in pending:
            step = view.steps.get(key)
            if step is None:
                continue
            nodes = self._step_nodes.get(key, [])
            if not any(top <= node.line < bottom for node, _ in nodes):
                self._stale.add(key)
                continue
            for node, is_join in nodes:
                node.set_label(step_label(step, now, join=is_join))

    def running_keys(self, view: RunView) -> set[str]:
        return {k for k, s in view.steps.items() if s.status == "running"}

    @property
    def highlighted_key(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None
