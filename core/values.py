"""JSON-like values from outside (plans, edited inputs, agent outputs): checked before anything uses them.

Inbound documents are refused, with a location, when they nest deeper than
``MAX_DEPTH``, expand (YAML aliases) past ``MAX_NODES`` values, hold a number
that is not finite or too large for a database column, text that is not valid
Unicode, a mapping key that is not a string, or a cycle. The walk is iterative
and visits each shared node once, so a 600-byte alias bomb is measured, not
expanded, and refused in milliseconds.

Agent outputs are not refused but made into strict JSON (``to_json_value``):
non-finite numbers become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``,
keys become strings, other objects their ``str()``; an output too deep or too
large fails the attempt. ``dumps`` is the one strict encoder: it never writes
``NaN`` or ``Infinity``, which no JSON reader accepts.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from core.errors import BadInput
from core.limits import MAX_CHARS, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_EXPANSION, MAX_INT, MAX_NODES

TOO_MANY_DIGITS = "a number has more digits than can be read (4,300)"


class ValueProblem(ValueError):
    """A value that cannot be accepted; ``location`` says where (``steps[2].input.x``)."""

    def __init__(self, location: str, message: str) -> None:
        if len(location) > 80:  # a path 64 levels deep says no more than its two ends
            location = location[:50] + "…" + location[-20:]
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.message = message


def _child_location(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    return list(enumerate(value))


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if isinstance(value, int):
        return None if -MAX_INT <= value <= MAX_INT else f"the integer is larger than {MAX_INT:,} (±2^63)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"the text holds {value[exc.start]!r}, which is not valid Unicode (a lone surrogate)"
        return None
    return f"a {type(value).__name__} is not a JSON value"


def check_document(value: Any, root: str = "") -> None:
    """Raise ``ValueProblem`` (located) unless ``value`` is a bounded, finite, valid JSON-like value."""
    if not _plainly_fine(value):
        _walk_document(value, root)


def _walk_document(value: Any, root: str) -> None:
    """The full walk: each shared node measured once, every problem located."""
    depth_of: dict[int, int] = {}  # id -> depth below and including it, once finished
    size_of: dict[int, tuple[int, int]] = {}  # id -> (nodes, characters) expanded
    on_path: set[int] = set()
    keep_alive: list[Any] = []  # ids stay unique while this walk holds the objects
    unique = [0, 0]  # values and characters as written (each shared node once)
    # each frame: (value, location, children left, depth so far, nodes so far, chars so far)
    stack: list[list[Any]] = []

    def enter(node: Any, location: str) -> tuple[int, int, int] | None:
        """A finished measure for leaves and known nodes, else push a frame and return None."""
        if isinstance(node, (dict, list, tuple)):
            known = id(node)
            if known in on_path:
                raise ValueProblem(location, "the document refers to itself (a YAML alias inside its own anchor)")
            if known in depth_of:
                return depth_of[known], *size_of[known]
            if isinstance(node, dict):
                for key in node:
                    if not isinstance(key, str):
                        raise ValueProblem(location, f"mapping keys are text, not {type(key).__name__} ({key!r})")
            on_path.add(known)
            keep_alive.append(node)
            unique[0] += 1
            if len(stack) >= MAX_DEPTH:
                raise ValueProblem(location, f"nested deeper than {MAX_DEPTH} levels")
            stack.append([node, location, iter(_children(node)), 1, 1, 0])
            return None
        problem = _scalar_problem(node)
        if problem is not None:
            raise ValueProblem(location, problem)
        chars = len(node) if isinstance(node, str) else 0
        unique[0] += 1
        unique[1] += chars
        return 0, 1, chars  # a leaf adds no nesting

    def finish(measure: tuple[int, int, int], key_chars: int) -> None:
        frame = stack[-1]
        frame[3] = max(frame[3], measure[0] + 1)
        frame[4] += measure[1]
        frame[5] += measure[2] + key_chars
        if len(stack) - 1 + frame[3] > MAX_DEPTH:  # a shared node reached deeper than where it was measured
            raise ValueProblem(frame[1], f"nested deeper than {MAX_DEPTH} levels")
        if frame[4] > MAX_NODES:
            raise ValueProblem(root, f"the document expands to more than {MAX_NODES:,} values (YAML aliases?)")
        if frame[5] > MAX_CHARS:
            raise ValueProblem(root, f"the document expands to more than {MAX_CHARS:,} characters (YAML aliases?)")

    enter(value, root)
    while stack:
        frame = stack[-1]
        item = next(frame[2], None)
        if item is None:
            stack.pop()
            node_id = id(frame[0])
            on_path.discard(node_id)
            depth_of[node_id], size_of[node_id] = frame[3], (frame[4], frame[5])
            if stack:
                finish((frame[3], frame[4], frame[5]), 0)
            else:
                _check_expansion(frame[4], frame[5], unique, root)
            continue
        key, child = item
        unique[1] += len(key) if isinstance(key, str) else 0
        measure = enter(child, _child_location(frame[1], key))
        if measure is not None:
            finish(measure, len(key) if isinstance(key, str) else 0)


def _plainly_fine(value: Any) -> bool:
    """Whether ``value`` is, at a glance, a tree of JSON values well inside every limit: each container met
    once, text keys, finite numbers in range, valid text. True skips ``check_document``'s full walk, which
    measures shared (YAML alias) nodes and locates problems at three times the cost (a 10,000-step plan is
    validated again each time its run is driven); False only means "walk it"."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(value, 0)]
    nodes = chars = 0
    while todo:
        node, depth = todo.pop()
        nodes += 1
        kind = type(node)
        if kind is str:
            chars += len(node)
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH - 1 or id(node) in seen:
                return False
            seen.add(id(node))
            if kind is dict:
                for key, child in node.items():
                    if type(key) is not str:
                        return False
                    chars += len(key)
                    todo.append((child, depth + 1))
            else:
                todo.extend((child, depth + 1) for child in node)
        elif kind is int:
            if not -MAX_INT <= node <= MAX_INT:
                return False
        elif kind is float:
            if not math.isfinite(node):
                return False
        elif node is not None and kind is not bool:
            return False
    return nodes <= MAX_NODES // 2 and chars <= MAX_CHARS // 2


def _check_expansion(nodes: int, chars: int, unique: list[int], root: str) -> None:
    """YAML aliases may repeat a part of a document, not multiply it: a few shared configs, not a bomb."""
    if nodes > MAX_EXPANSION * unique[0] + 10_000 or chars > MAX_EXPANSION * unique[1] + 1_000_000:
        raise ValueProblem(
            root,
            f"YAML aliases expand the document to {nodes:,} values and {chars:,} characters "
            f"from {unique[0]:,} and {unique[1]:,} written; at most {MAX_EXPANSION}× is accepted",
        )


def to_json_value(value: Any, depth_limit: int = MAX_DEPTH) -> Any:
    """An agent's output as strict JSON data (see the module docstring); ``ValueProblem`` if too deep or large."""
    budget = [MAX_NODES]

    def convert(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueProblem("output", f"the output holds more than {MAX_NODES:,} values")
        if depth > depth_limit:
            raise ValueProblem("output", f"the output is nested deeper than {depth_limit} levels")
        if node is None or isinstance(node, (bool, str)):
            return node
        if isinstance(node, int):
            return node if -MAX_INT <= node <= MAX_INT else str(node)
        if isinstance(node, float):
            if math.isfinite(node):
                return node
            return "NaN" if math.isnan(node) else ("Infinity" if node > 0 else "-Infinity")
        if isinstance(node, dict):
            return {str(k): convert(v, depth + 1) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [convert(v, depth + 1) for v in node]
        return str(node)

    return convert(value, 0)


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON text (never ``NaN``/``Infinity``, which no JSON reader accepts): such numbers, stored
    before loopdeck refused them, are written as strings; objects that are not JSON become their ``str()``.
    Non-ASCII characters are escaped, so no untrusted byte reaches a terminal raw."""
    made_text: list[object] = []  # what was not JSON (``default``): the standard library indents those

    def as_text(obj: object) -> str:
        made_text.append(obj)
        return str(obj)

    try:
        compact = json.dumps(value, allow_nan=False, default=as_text)  # (the C encoder: strict, and fast)
    except ValueError:
        value = to_json_value(value, depth_limit=4 * MAX_DEPTH)
        compact = json.dumps(value, allow_nan=False)
    if indent is None:
        return compact
    fast = _indented(value) if indent == 2 and not made_text else None
    return fast or json.dumps(value, allow_nan=False, default=str, indent=indent)


def _indented(value: Any) -> str | None:
    """``json.dumps(value, indent=2)`` of a value ``dumps`` found plain JSON, written by orjson; None where
    orjson would write it otherwise or cannot: a key that is not text, a float or tuple subclass (a
    numpy number, a named tuple), an integer past 64 bits, a lone surrogate, nesting past 255 levels.

    The standard library indents in pure Python: 0.5 s for the 20 MB of a 10,000-step ``show --json``,
    against 20 ms here. The text is the same but for how a float is spelled (``1e-7`` for ``1e-07``,
    ``0.000015`` for ``1.5e-05``: the same number); non-ASCII is escaped afterwards, as ``ensure_ascii``
    does (orjson writes it raw).
    """
    import orjson  # (only an indented document needs it)

    try:
        text = orjson.dumps(value, default=_not_plain, option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONEncodeError, TypeError):
        return None
    if text.isascii() and "\x7f" not in text:
        return text
    return _NOT_ASCII.sub(_escaped, text)


def _not_plain(obj: object) -> None:
    raise TypeError(type(obj).__name__)  # (orjson asks only of what it does not write as JSON itself)


_NOT_ASCII = re.compile("[\x7f-\U0010ffff]")  # what ``ensure_ascii`` escapes that orjson does not


def _escaped(match: re.Match[str]) -> str:
    """A character as ``ensure_ascii`` writes it: ``\\u00e9``, or a surrogate pair past the first plane."""
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def load_document(path: str | Path, what: str = "file") -> Any:
    """``read_document`` for the public API: a refused file is a ``BadInput`` naming it."""
    try:
        return read_document(path)
    except ValueProblem as exc:
        raise BadInput(f"{what} {path}: {exc}") from None


def load_text(path: str | Path, what: str = "file") -> str:
    """``read_text`` for the public API: a refused file is a ``BadInput`` naming it."""
    try:
        return read_text(path)
    except ValueProblem as exc:
        raise BadInput(f"{what} {path}: {exc}") from None


def checked_input(value: Any, what: str = "the edited input") -> Any:
    """A value handed in through the API (an edited input): checked like a plan's, ``BadInput`` if refused."""
    try:
        check_document(value)
    except ValueProblem as exc:
        where = f" at {exc.location}" if exc.location else ""
        raise BadInput(f"{what} is refused{where}: {exc.message}") from None
    return value


def parse_json(text: str, what: str) -> Any:
    """``loads`` for the public API: a refused value is a ``BadInput`` (exit 2 on the command line)."""
    try:
        return loads(text, what)
    except ValueProblem as exc:
        raise BadInput(str(exc)) from None


def loads(text: str, what: str) -> Any:
    """Parse JSON given by a person (``--input``, an edited input), checked like a plan's values.

    Raises ``ValueProblem`` with a message that says what is wrong and where.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueProblem("", f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueProblem(
            "", f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise ValueProblem("", f"{what} is refused: {TOO_MANY_DIGITS}") from None
    try:
        check_document(value)
    except ValueProblem as exc:
        where = f" at {exc.location}" if exc.location else ""
        raise ValueProblem("", f"{what} is refused{where}: {exc.message}") from None
    return value


def read_document(path: str | Path, json_only: bool | None = None) -> Any:
    """Read a YAML or JSON file (JSON by its ``.json`` suffix) into checked data; ``ValueProblem`` says why not."""
    path = Path(path)
    return parse_document(read_text(path), path.suffix.lower() == ".json" if json_only is None else json_only)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file of at most ``MAX_DOCUMENT_BYTES``; ``ValueProblem`` says why not."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise ValueProblem("", f"{path} is {size:,} bytes; files up to {MAX_DOCUMENT_BYTES:,} bytes are read")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueProblem("", f"file not found: {path}") from None
    except IsADirectoryError:
        raise ValueProblem("", f"{path} is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ValueProblem("", f"cannot read {path}: it is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ValueProblem("", f"cannot read {path}: {exc.strerror or exc}") from None


def parse_document(text: str, json_only: bool = False) -> Any:
    """YAML (or strict JSON) text as checked data: bounded depth and size, finite numbers, valid text."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ValueProblem("", f"the document is {len(text):,} characters; up to {MAX_DOCUMENT_BYTES:,} are read")
    import yaml  # (loaded by the first document read, not by every command: a listing reads none)

    try:  # PyYAML's safe loader (the C one when built): no Python objects, only data
        data = json.loads(text) if json_only else yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except RecursionError:
        raise ValueProblem("", f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueProblem(f"line {exc.lineno}, column {exc.colno}", exc.msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueProblem(where, f"not valid YAML: {problem}") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise ValueProblem("", TOO_MANY_DIGITS) from None
    check_document(data)
    return data
