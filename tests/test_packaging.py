"""What `pip install .` gives a user: a wheel that holds every module, the stylesheet, the migrations, the license.

(A wheel built from an explicit package list once left out tui.screens and
tui.widgets: the installed dashboard crashed at start. .ci/run also installs
the wheel in a fresh venv and starts the CLI, a demo and the dashboard from it.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from core import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    """Built from a clean copy of the tree (a stale build/ directory would hide a missing module)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    files = [name for name in files if (ROOT / name).is_file()]  # not a tracked file deleted in the working tree
    tree = tmp_path / "tree"
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(tree),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("loopdeck-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {name for name in files if name.endswith(".py") and name.split("/")[0] in ("core", "tui")}
    assert {n for n in names if n.endswith(".py")} == sources
    assert {
        "tui/dashboard/loopdeck.tcss",
        "core/store/migrations/script.py.mako",
        "tui/web/templates/index.html",
        "core/templates/plan-execute-verify.yaml",
        "core/templates/research-draft-review.yaml",
        "core/templates/fix-until-green.yaml",
    } <= names
    dist = f"loopdeck-{__version__}.dist-info"
    assert any(n.startswith(dist) and n.endswith("LICENSE") for n in names)
    with zipfile.ZipFile(wheel) as zf:
        assert "loopdeck = tui.cli:entry" in zf.read(f"{dist}/entry_points.txt").decode()
        metadata = zf.read(f"{dist}/METADATA").decode()
    assert f"Version: {__version__}" in metadata and "MIT" in metadata
    assert not any(n.startswith("tests/") for n in names)
