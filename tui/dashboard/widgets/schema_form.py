"""A form for a JSON object, generated from its JSON Schema: what an operator edits a tool call's arguments in.

One field per property, in the schema's order: text and numbers as inputs, a
boolean as a switch, an enum as a select, an array of scalars as one
comma-separated input; anything else (nested objects, arrays of objects,
unions) falls back to a small JSON editor. ``value()`` reads the fields back
into an object, or raises ``FormError`` naming each field it cannot read; the
caller then checks the object against the whole schema (jsonschema), so the
rules live in one place.
"""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Switch, TextArea

from core import BadInput, parse_json
from tui.text.literal import literal

SCALARS = ("string", "number", "integer", "boolean")


class FormError(ValueError):
    """Fields that cannot be read (a number that is not one, JSON that does not parse)."""


def _type(prop: dict[str, Any]) -> str | None:
    """The property's one JSON type (``Optional[X]``, i.e. anyOf X|null, counts as X); None when it has several."""
    kind = prop.get("type")
    if isinstance(kind, str):
        return kind
    options = [o for o in prop.get("anyOf", []) if isinstance(o, dict) and o.get("type") != "null"]
    if len(options) == 1 and isinstance(options[0].get("type"), str) and "$ref" not in options[0]:
        return str(options[0]["type"])
    return None


def field_kind(prop: dict[str, Any]) -> str:
    """How a property is edited: enum, boolean, integer, number, string, list (of scalars) or json."""
    if isinstance(prop.get("enum"), list) and all(isinstance(v, (str, int, float, bool)) for v in prop["enum"]):
        return "enum"
    kind = _type(prop)
    if kind in SCALARS:
        return kind
    items = prop.get("items")
    if kind == "array" and isinstance(items, dict) and items.get("type") in SCALARS:
        return "list"
    return "json"


class SchemaForm(VerticalScroll):
    """The fields of one object; ``value()`` reads them back."""

    def __init__(self, schema: dict[str, Any], value: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema = schema
        self.initial = value
        self.props: list[tuple[str, dict[str, Any], str]] = [
            (name, prop, field_kind(prop)) for name, prop in (schema.get("properties") or {}).items()
        ]
        self.required = set(schema.get("required") or [])

    def compose(self) -> ComposeResult:
        for index, (name, prop, kind) in enumerate(self.props):
            hint = prop.get("description") or prop.get("title") or ""
            star = " *" if name in self.required else ""
            label = literal(f"{name}{star}", "bold")
            if hint and hint.lower() != name.replace("_", " ").lower():
                label.append_text(literal(f"  {hint}", "dim"))
            if kind == "list":
                label.append("  (comma-separated)", "dim")
            yield Label(label)
            yield self._field(f"field-{index}", prop, kind, self.initial.get(name, prop.get("default")))

    def _field(self, field_id: str, prop: dict[str, Any], kind: str, current: Any) -> Widget:
        if kind == "enum":
            options = [(json.dumps(v) if not isinstance(v, str) else v, v) for v in prop["enum"]]
            chosen = current if current in prop["enum"] else Select.NULL
            return Select(options, value=chosen, id=field_id, allow_blank=True)
        if kind == "boolean":
            return Switch(value=bool(current), id=field_id)
        if kind in ("integer", "number"):
            return Input("" if current is None else str(current), type=kind, id=field_id)
        if kind == "string":
            return Input("" if current is None else str(current), id=field_id)
        if kind == "list":
            return Input(", ".join(str(v) for v in current or []), id=field_id)
        editor = TextArea.code_editor("" if current is None else json.dumps(current, indent=2), language="json")
        editor.id = field_id
        editor.styles.height = 6
        return editor

    def focus_first(self) -> None:
        fields = self.query("#field-0")
        if fields:
            fields.first().focus()

    def value(self) -> dict[str, Any]:
        """The object the fields say; ``FormError`` listing each field that cannot be read."""
        out: dict[str, Any] = {}
        problems: list[str] = []
        for index, (name, prop, kind) in enumerate(self.props):
            widget = self.query_one(f"#field-{index}")
            try:
                present, value = _read(widget, prop, kind)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if present:
                out[name] = value
        if problems:
            raise FormError("; ".join(problems))
        return out


def _read(widget: Widget, prop: dict[str, Any], kind: str) -> tuple[bool, Any]:
    """(whether the field gives a value, the value); an empty optional field gives none."""
    if isinstance(widget, Switch):
        return True, widget.value
    if isinstance(widget, Select):
        return (False, None) if widget.value is Select.NULL else (True, widget.value)
    if isinstance(widget, TextArea):
        text = widget.text.strip()
        if not text:
            return False, None
        try:
            return True, parse_json(text, "the value")
        except BadInput as exc:
            raise ValueError(str(exc).removeprefix("the value ")) from None  # "is not valid JSON: …"
    assert isinstance(widget, Input)
    text = widget.value.strip()
    if kind == "string":
        return (bool(widget.value) or "default" not in prop), widget.value
    if not text:
        return False, None
    if kind == "integer":
        try:
            return True, int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == "number":
        try:
            return True, float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    items = [part.strip() for part in text.split(",") if part.strip()]
    item_kind = (prop.get("items") or {}).get("type")
    return True, [_scalar(item, item_kind) for item in items]


def _scalar(text: str, kind: str | None) -> Any:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() == "true"
    return text
