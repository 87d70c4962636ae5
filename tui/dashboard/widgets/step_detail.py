"""Tabs about the highlighted step: input, output, context, events, error."""

from __future__ import annotations

import json
from typing import Any

from rich.console import RenderableType
from rich.highlighter import JSONHighlighter
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from core import SpanRecord
from tui.dashboard.palette import status_style
from tui.dashboard.viewmodel import RunView, StepView
from tui.text.literal import clean, literal

SHOWN_CHARS = 20_000
"""The characters of one value a tab draws: a 3 MB output drawn whole held the dashboard for seven seconds
each time its step was highlighted (its JSON indented by Python's encoder, highlighted, laid out); cut at
20,000 characters (a thousand lines or more) it is encoded and highlighted in ~7 ms and laid out in 30-60
ms. The rest is said to be there (``show --json`` has it)."""
CUT_NOTE = "… cut at {:,} characters: `loopdeck show RUN --json` has it whole"


def as_json(value: Any) -> RenderableType:
    """Structured values as highlighted JSON (``json.*`` styles: the theme's colours), text shown literally;
    either cut at ``SHOWN_CHARS``."""
    if value is None:
        return Text("—", style="dim")
    if isinstance(value, str):
        return shown(value)
    text, cut = _encoded(value, SHOWN_CHARS, indent=2)
    return _noted(JSONHighlighter()(Text(clean(text))), cut)


def shown(value: str | None, style: str = "", tail: bool = False) -> Text:
    """``literal(value)``, cut at ``SHOWN_CHARS`` (``tail``: its end kept, as a stream's newest text)."""
    if value is None or len(value) <= SHOWN_CHARS:
        return literal(value, style)
    if tail:
        return Text.assemble(Text("… ", style="dim"), literal(value[-SHOWN_CHARS:], style))
    return _noted(literal(value[:SHOWN_CHARS], style), True)


def _encoded(value: Any, limit: int, indent: int | None = None) -> tuple[str, bool]:
    """``value`` as JSON, encoded only as far as ``limit`` characters (chunk by chunk: a waiting step's event
    carries its whole input); whether it was cut."""
    parts, size = [], 0
    for chunk in json.JSONEncoder(indent=indent, ensure_ascii=True).iterencode(value):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(parts)[:limit], True
    return "".join(parts), False


def _noted(text: Text, cut: bool) -> Text:
    if cut:
        text.append("\n" + CUT_NOTE.format(SHOWN_CHARS), style="dim italic")
    return text


_Row = tuple[str, float, float, str]  # label, began, ended, status


def timeline(
    spans: list[SpanRecord], running: list[tuple[str, int, float]], start: float, now: float, width: int
) -> Text:
    """A Gantt chart: one row per attempt, bars placed on the run's time axis; under each attempt, a row
    per model call (``chat N``) and per tool call."""
    attempts: dict[tuple[str, int], _Row] = {
        (s.step_key, s.attempt): (f"{s.step_key} #{s.attempt}", s.started_at, s.ended_at, s.status)
        for s in spans
        if s.kind == "attempt"
    }
    for key, attempt, began in running:
        attempts[(key, attempt)] = (f"{key} #{attempt}", began, now, "running")
    children: dict[tuple[str, int], list[_Row]] = {}
    for s in spans:
        if s.kind != "attempt":
            label = f"chat {s.turn}" if s.kind == "chat" else str(s.name)
            parent = (s.step_key, s.attempt)
            if parent not in attempts:
                label = f"{s.step_key} #{s.attempt} {label}"
            children.setdefault(parent, []).append((label, s.started_at, s.ended_at, s.status))
    rows: list[_Row] = []
    for parent, row in sorted(attempts.items(), key=lambda item: item[1][1]):
        rows.append(row)
        rows += [(f" └ {label}", *rest) for label, *rest in sorted(children.pop(parent, []), key=lambda r: r[1])]
    rows += sorted((r for orphans in children.values() for r in orphans), key=lambda r: r[1])
    if not rows:
        return Text("no attempt has finished yet", style="dim")
    end = max(now if running else 0, *(r[2] for r in rows))
    total = max(end - start, 1e-6)
    label_w = min(28, max(len(r[0]) for r in rows))
    bar_w = max(10, width - label_w - 12)
    text = Text()
    for label, began, ended, status in rows:
        left = min(bar_w - 1, max(0, int((began - start) / total * bar_w)))
        length = max(1, int((ended - began) / total * bar_w))
        text.append_text(literal(label[:label_w].ljust(label_w)))
        text.append(" " + " " * left)
        text.append("█" * min(length, bar_w - left), status_style(status))
        text.append(f" {ended - began:.1f}s\n", "dim")
    text.append(f"{'':>{label_w}} 0s{'':>{max(0, bar_w - 8)}}{total:.1f}s", "dim")
    return text


class StepDetail(Vertical):
    def compose(self) -> ComposeResult:
        with TabbedContent(id="detail-tabs"):
            for pane_id, title in (
                ("input", "Input"),
                ("output", "Output"),
                ("context", "Context"),
                ("events", "Events"),
                ("error", "Error"),
                ("calls", "Calls"),
                ("timeline", "Timeline"),
                ("result", "Result"),
            ):
                with TabPane(title, id=f"tab-{pane_id}"), VerticalScroll():
                    yield Static(id=f"detail-{pane_id}", classes="detail-body")

    shown_key: str | None = None  # the step whose detail is fully shown (tests wait on it)

    def show_context(self, entries: list[dict[str, Any]] | None) -> None:
        self.query_one("#detail-context", Static).update(context_text(entries))

    def show_result(self, status: str, result: dict[str, Any] | None) -> None:
        """The run's result (not the step's): its summary (naming who finished it), the answer, the evidence."""
        target = self.query_one("#detail-result", Static)
        if result is None:
            target.update(Text(f"the run is {status}; its result is recorded when it ends", style="dim"))
            return
        parts: list[RenderableType] = [literal(result.get("summary"), "bold")]
        parts += [Text("answer", style="bold underline"), as_json(result.get("answer"))]
        evidence = {k: v for k, v in (result.get("evidence") or {}).items() if v}
        if evidence:
            parts += [Text("evidence", style="bold underline"), as_json(evidence)]
        target.update(_stack(*parts))

    def show_step(self, view: RunView, step: StepView | None) -> None:
        if step is None:
            for name in ("input", "output", "context", "events", "error", "calls"):
                self.query_one(f"#detail-{name}", Static).update(Text("no step selected", style="dim"))
            return
        head = Text.assemble(
            literal(step.title, "bold"), "  ", literal(step.type, "dim"), "  on ", literal(step.agent, "italic")
        )
        self.query_one("#detail-input", Static).update(_stack(head, as_json(step.input)))
        if step.status == "running" and step.partial:
            streamed = Text("streaming… ", style="italic dim")
            streamed.append_text(shown(step.partial, tail=True))
            self.query_one("#detail-output", Static).update(streamed)
        else:
            self.query_one("#detail-output", Static).update(as_json(step.output))
        lines = Text()
        for event in view.events:
            if event.step_key == step.key and event.type != "step_output_partial":
                lines.append(f"#{event.id} {event.type} ", "bold")
                lines.append_text(literal(_encoded(event.payload, 300)[0], "dim"))
                lines.append("\n")
        self.query_one("#detail-events", Static).update(lines or Text("no events yet in this session", style="dim"))
        self.query_one("#detail-error", Static).update(
            shown(step.error, "error") if step.error else Text("no error", style="dim")
        )
        self.query_one("#detail-calls", Static).update(calls_of(view, step.key))


def context_text(entries: list[dict[str, Any]] | None) -> RenderableType:
    """What a step receives from upstream (outputs of its dependencies, per the policy)."""
    if not entries:
        return Text("no upstream output in its context" if entries is not None else "—", style="dim")
    parts: list[RenderableType] = []
    for entry in entries:
        parts.append(Text.assemble(literal(entry["key"], "bold"), " · ", literal(entry["type"], "dim")))
        parts.append(shown(entry["output"]))
    return _stack(*parts)


def calls_of(view: RunView, key: str) -> RenderableType:
    """The step's tool calls, turn by turn: tool, arguments, what came back, who or which rule decided."""
    calls = [c for c in view.calls.values() if c.step == key]
    if not calls:
        return Text("no tool calls", style="dim")
    parts: list[RenderableType] = []
    for call in calls:
        head = Text.assemble(
            literal(call.id, "bold"),
            "  ",
            literal(call.status, status_style(call.status)),
            "  ",
            literal(call.tool, "italic"),
            f"  turn {call.turn}" if call.turn else "",
        )
        parts += [head, as_json(call.arguments)]
        if call.error:
            parts.append(shown(call.error, "error"))
        elif call.result is not None:
            parts.append(as_json(call.result))
        decided = " · ".join(
            x for x in (f"by {call.decided_by}" if call.decided_by else None, call.rule, call.reason) if x
        )
        if decided:
            parts.append(literal(decided, "dim"))
    return _stack(*parts)


def _stack(*parts: RenderableType) -> RenderableType:
    from rich.console import Group

    return Group(*parts)
