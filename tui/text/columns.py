"""Rows of plain text in aligned columns: a 10,000-step run's table in tens of milliseconds.

Rich's ``Table`` measures and renders every cell through its layout engine,
which took 3.4 s for ``loopdeck show`` of a 10,000-step run. Here a column is
as wide as its widest cell, columns are two spaces apart (as a Rich table
without borders or edge padding), a cell's lines stack, and the one column
allowed to fold (an error, the last) takes the width that is left, its text
continuing on the next lines (broken after a space where it can). The other
columns are never cut (Rich would shorten them with an ellipsis): a terminal
narrower than they are wraps the line. Tabs are expanded. The cells must be
clean text already (``tui.text.literal.clean``): what is joined here is
written as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, chop_cells, set_cell_size

GAP = "  "
TAB = 8  # a tab stop every 8 cells within a cell, as Rich expands them
MIN_FOLD = 20  # a folding column keeps at least this many cells, however narrow the terminal


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], width: int, fold: int | None = None) -> list[str]:
    """The header's line, then each row's lines, fitted to ``width`` cells by folding column ``fold``."""
    table = [[cell.expandtabs(TAB) for cell in row] for row in (header, *rows)]  # (a tab measures 0 cells)
    widths = [max(cell_len(line) for row in table for line in row[i].split("\n")) for i in range(len(header))]
    if fold is not None:
        others = sum(w for i, w in enumerate(widths) if i != fold) + len(GAP) * (len(widths) - 1)
        widths[fold] = max(min(widths[fold], width - others), min(widths[fold], MIN_FOLD))
    lines: list[str] = []
    for row in table:
        cells = [_cell_lines(text, widths[i], folds=i == fold) for i, text in enumerate(row)]
        for k in range(max(len(cell) for cell in cells)):
            parts = [set_cell_size(cell[k] if k < len(cell) else "", widths[i]) for i, cell in enumerate(cells)]
            lines.append(GAP.join(parts).rstrip())
    return lines


def _cell_lines(text: str, width: int, folds: bool) -> list[str]:
    lines = text.split("\n")
    if not folds:
        return lines
    return [chunk for line in lines for chunk in _fold(line, width)]


def _fold(line: str, width: int) -> list[str]:
    """``line`` in pieces of at most ``width`` cells, broken after a space where one falls in the piece, else
    anywhere (never inside a wide character)."""
    pieces = []
    while cell_len(line) > width:
        piece = chop_cells(line, width)[0] or line[0]  # (a wide character in a column of one cell)
        space = piece.rfind(" ")
        if space > 0:
            piece = piece[: space + 1]
        pieces.append(piece.rstrip(" "))
        line = line[len(piece) :]
    pieces.append(line)
    return pieces
