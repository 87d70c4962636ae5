"""Colours come from the theme: no colour literals in the dashboard's Python, every theme readable."""

from __future__ import annotations

import ast
from pathlib import Path

from rich.errors import StyleSyntaxError
from rich.style import Style
from textual.color import Color

from tests.tui.test_dashboard import SIZE, gated_plan, until
from tui.dashboard import palette
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.screens.run import RunScreen

DASHBOARD = Path(__file__).resolve().parents[2] / "tui" / "dashboard"


def colour_literals(path: Path) -> list[str]:
    """String constants that Rich reads as a style with a colour (``"bold red"``, ``"#ff0000"``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 40:
            try:
                style = Style.parse(node.value)
            except (StyleSyntaxError, ValueError):
                continue
            colours = [c for c in (style.color, style.bgcolor) if c is not None and not c.is_default]
            if colours:  # ("default", the terminal's own colour, is no literal: JSON schemas say it too)
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return found


def test_the_dashboard_names_no_colour_in_python():
    found = [hit for path in sorted(DASHBOARD.rglob("*.py")) for hit in colour_literals(path)]
    assert found == []


def test_the_scan_would_see_a_colour_literal(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('STYLE = "bold red"\nOTHER = "status.failed"\n')
    assert colour_literals(sample) == ["sample.py:1: 'bold red'"]


def test_every_semantic_style_takes_its_colour_from_each_built_in_theme():
    from textual.theme import BUILTIN_THEMES

    for name, theme in BUILTIN_THEMES.items():
        variables = {**theme.to_color_system().generate(), **theme.variables}
        styles = palette.rich_theme(variables).styles
        ok = styles["status.succeeded"].color
        assert ok is not None, name
        assert ok.triplet == Color.parse(variables["text-success"]).rich_color.triplet, name


async def test_switching_to_a_light_theme_recolours_the_semantic_styles(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), user="hal")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.view is not None)
        dark = app.console.get_style("status.failed").color
        app.theme = "textual-light"
        await until(pilot, lambda: app.console.get_style("status.failed").color != dark)
        light = Color.parse(app.get_css_variables()["text-error"]).rich_color
        assert app.console.get_style("status.failed").color.triplet == light.triplet


def test_the_theme_setting_is_checked_against_textuals_themes(monkeypatch):
    import pytest

    from core import BadInput
    from tui.cli.commands.dashboard import configured_theme

    monkeypatch.setenv("LOOPDECK_THEME", "solarized-light")
    assert configured_theme() == "solarized-light"
    monkeypatch.setenv("LOOPDECK_THEME", "neon")
    with pytest.raises(
        BadInput, match=r'unknown theme "neon" \(setting theme / LOOPDECK_THEME\); one of: .*textual-light'
    ):
        configured_theme()
