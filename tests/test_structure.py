"""The house's guards that need no tool: sizes, and an engine that loads without a UI.

(The import boundaries themselves are import-linter contracts in pyproject.toml,
checked by ``lint-imports`` in .ci/run; ruff and mypy run there too.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_CLASS_LINES = 400
MAX_MODULE_LINES = 600


def sources() -> list[Path]:
    return sorted(p for package in ("core", "tui") for p in (ROOT / package).rglob("*.py"))


def test_there_are_sources_to_measure():
    assert len(sources()) > 50  # a wrong root would pass the size checks with nothing measured


def test_no_module_is_over_600_lines():
    big = {str(p.relative_to(ROOT)): n for p in sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert big == {}, f"split these modules by concern (at most {MAX_MODULE_LINES} lines): {big}"


def test_no_class_is_over_400_lines():
    big = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    big[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert big == {}, f"split these classes by concern (at most {MAX_CLASS_LINES} lines): {big}"


def test_importing_the_engine_loads_no_user_interface():
    """``import core`` (a worker, a plan author's script) pays for no UI library and cannot reach one."""
    probe = (
        "import sys, core\n"
        "for name in core.__all__: getattr(core, name)  # every public name loaded (they load lazily)\n"
        "ui = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui'))\n"
        "print(','.join(ui))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"import core loaded: {result.stdout.strip()}"
