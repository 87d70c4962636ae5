"""Rows in aligned columns (tui/text/columns.py): what `loopdeck show` prints for a run's steps."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from tui.text.columns import MIN_FOLD, columns
from tui.text.literal import clean

HEADER = ("STEP", "STATUS", "ERROR")


def test_columns_line_up_as_a_borderless_rich_table_does():
    rows = [
        ("draft", "succeeded", ""),
        ("publish_everything", "failed", "boom"),
        ("récit_✓", "pending", "e\u0301t\u00e9"),  # (a combining accent: one cell for two code points)
        ("日本語日本語日本語日本語", "running", "👍 ok"),  # (two cells a character: the widest key, by cells)
    ]
    table = Table(box=None, pad_edge=False)
    for name in HEADER:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(width=200, file=None, record=True, color_system=None)
    with console.capture() as captured:
        console.print(table)
    rich_lines = [line.rstrip() for line in captured.get().splitlines()]
    assert columns(HEADER, rows, 200) == rich_lines


def test_wide_text_folds_by_cells_and_never_inside_a_character():
    lines = columns(HEADER, [("a", "failed", "日本語" * 20)], width=40, fold=2)
    assert all(cell_len(line) <= 40 for line in lines) and len(lines) > 3
    assert "".join(line[len("STEP  STATUS  ") :] for line in lines[1:]) == "日本語" * 20


def test_an_error_folds_after_a_space_where_it_can_and_tabs_are_expanded():
    lines = columns(HEADER, [("a", "failed", "alpha beta gamma delta epsilon zeta")], width=34, fold=2)
    assert [line[len("STEP  STATUS  ") :] for line in lines[1:]] == ["alpha beta gamma", "delta epsilon zeta"]
    assert columns(("A", "B"), [("a\tb", "c")], width=80)[1] == "a       b  c"  # (a tab: to the next 8th cell)


def test_the_folding_column_takes_what_is_left_and_continues_on_the_next_lines():
    error = "x" * 50 + " and then " + "y" * 50
    lines = columns(HEADER, [("a", "failed", error)], width=60, fold=2)
    assert all(cell_len(line) <= 60 for line in lines)
    folded = "".join(line[len("STEP  STATUS  ") :] for line in lines[1:])
    assert len(lines) > 2 and folded.replace(" ", "") == error.replace(" ", "")  # all of it, in order
    narrow = columns(HEADER, [("a", "failed", error)], width=5, fold=2)  # a terminal too narrow for anything
    assert max(cell_len(line) for line in narrow) >= MIN_FOLD  # the error still shows, MIN_FOLD cells a line


def test_a_cell_of_several_lines_stacks_and_escapes_stay_visible():
    lines = columns(HEADER, [("a", "failed", clean("line one\nline two \x1b[31mred"))], width=200)
    assert lines[1:] == ["a     failed  line one", "              line two \\x1b[31mred"]
    assert "\x1b" not in "".join(lines)
