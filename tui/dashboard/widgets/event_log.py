"""The live event log: follows new events until the operator scrolls up; `end` resumes.

One line per event, clipped with ``…`` at the log's width (no sideways
scrolling); `l` opens the recent events in full (``dialogs.events``).
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core import Event, EventType, iso
from tui.text.literal import literal


def event_line(event: Event) -> Text:
    stamp = (iso(event.created_at) or "")[11:23]
    text = Text.assemble((stamp + " ", "dim"), (f"{event.type:<21}", "bold"))  # the longest type: tool_call_interrupted
    if event.step_key:
        text.append_text(literal(event.step_key, "key"))
        text.append(" ")
    payload = (
        {k: v for k, v in event.payload.items() if k not in ("input",)}
        if isinstance(event.payload, dict)
        else event.payload
    )
    text.append_text(literal(json.dumps(payload, ensure_ascii=True)[:200], "dim"))
    return text


class EventLog(ScrollView, can_focus=True):
    """Lines kept as ``Text`` and drawn when seen (the Line API), so each is clipped at the width the log has
    now — after a resize too — with ``…``, and never scrolls sideways."""

    MAX_LINES = 1000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lines: list[Text] = []
        self.following = True

    def add(self, events: list[Event], room: int | None = None) -> None:
        """Append the newest events; a burst larger than the log's height is summarised, not drawn.

        At thousands of events a second only what an operator can see is
        kept; every event stays in the store (`loopdeck show`, the step's
        Events tab, `l`).
        """
        events = [e for e in events if e.type != EventType.STEP_OUTPUT_PARTIAL]  # those fill the Output tab
        if not events:
            return
        room = room or max(8, self.size.height)
        if len(events) > room:
            skipped = len(events) - room
            note = f"… {skipped:,} more events (ids {events[0].id}–{events[skipped - 1].id}) not drawn"
            self.lines.append(Text(note, style="dim italic"))
            events = events[skipped:]
        self.lines.extend(event_line(event) for event in events)
        trimmed = len(self.lines) - self.MAX_LINES
        if trimmed > self.MAX_LINES // 10:  # trimmed in chunks: a list, not a deque
            del self.lines[:trimmed]
            if not self.following:  # the lines the operator reads stay under their eyes
                self.scroll_to(y=max(0, self.scroll_y - trimmed), animate=False, immediate=True)
        self.virtual_size = Size(0, len(self.lines))
        if self.following:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = round(self.scroll_y) + y
        if index >= len(self.lines) or width <= 0:
            return Strip.blank(width, self.rich_style)
        line = self.lines[index].copy()
        line.truncate(width, overflow="ellipsis")
        strip = Strip(list(line.render(self.app.console)), line.cell_len)
        return strip.extend_cell_length(width).apply_style(self.rich_style)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolled up by the operator: stop following; back at the bottom: follow again."""
        super().watch_scroll_y(old_value, new_value)
        at_bottom = new_value >= self.max_scroll_y  # (a resize that clamps the scroll keeps it at the bottom)
        if at_bottom or new_value < old_value:
            self.following = at_bottom

    def follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False)

    @property
    def title(self) -> str:
        return "events" if self.following else "events · not following (end follows)"
