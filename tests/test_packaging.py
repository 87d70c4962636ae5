"""What `pip install .` gives a user: a wheel that holds every module, the stylesheet, the migrations, the license.

(A wheel built from an explicit package list once left out tui.screens and
tui.widgets: the installed dashboard crashed at start. .ci/run also installs
the wheel in a fresh venv and starts the CLI, a demo and the dashboard from it.)
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from core import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    wheel = next(tmp_path.glob("loopdeck-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for package in ("core", "tui") for p in (ROOT / package).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources - names == set()
    assert {"tui/loopdeck.tcss", "core/migrations/script.py.mako"} <= names
    dist = f"loopdeck-{__version__}.dist-info"
    assert any(n.startswith(dist) and n.endswith("LICENSE") for n in names)
    with zipfile.ZipFile(wheel) as zf:
        assert "loopdeck = tui.cli:main" in zf.read(f"{dist}/entry_points.txt").decode()
        metadata = zf.read(f"{dist}/METADATA").decode()
    assert f"Version: {__version__}" in metadata and "MIT" in metadata
    assert not any(n.startswith("tests/") for n in names)
