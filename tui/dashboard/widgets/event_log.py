"""The live event log: follows new events until the operator scrolls up; `end` resumes."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import RichLog

from core import Event, EventType, iso
from tui.text.literal import literal


def event_line(event: Event) -> Text:
    stamp = (iso(event.created_at) or "")[11:23]
    text = Text.assemble((stamp + " ", "dim"), (f"{event.type:<21}", "bold"))  # the longest type: tool_call_interrupted
    if event.step_key:
        text.append_text(literal(event.step_key, "cyan"))
        text.append(" ")
    payload = (
        {k: v for k, v in event.payload.items() if k not in ("input",)}
        if isinstance(event.payload, dict)
        else event.payload
    )
    text.append_text(literal(json.dumps(payload, ensure_ascii=True)[:200], "dim"))
    return text


class EventLog(RichLog):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_lines=1000, wrap=False, markup=False, highlight=False, auto_scroll=False, **kwargs)  # type: ignore[arg-type]
        self.following = True

    def add(self, events: list[Event], room: int | None = None) -> None:
        """Append the newest events; a burst larger than the log's height is summarised, not drawn.

        Writing a line costs its render, so at thousands of events a second only
        what an operator can see is drawn; every event stays in the store
        (`loopdeck show`, the step's Events tab).
        """
        events = [e for e in events if e.type != EventType.STEP_OUTPUT_PARTIAL]  # those fill the Output tab
        if not events:
            return
        at_bottom = self.scroll_y >= self.max_scroll_y - 1
        self.following = at_bottom  # scrolled up: stop following until `end`
        room = room or max(8, self.size.height)
        if len(events) > room:
            skipped = len(events) - room
            self.write(
                Text(
                    f"… {skipped:,} more events (ids {events[0].id}–{events[skipped - 1].id}) not drawn",
                    style="dim italic",
                ),
                scroll_end=self.following,
            )
            events = events[skipped:]
        for event in events:
            self.write(event_line(event), scroll_end=self.following)

    def follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False)
