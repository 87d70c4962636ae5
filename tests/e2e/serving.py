"""A real ``loopdeck serve`` in a subprocess, and what the tests read off it (its URL, its dashboard processes)."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import Cli


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT (reached on loopback even when bound to 0.0.0.0)

    def dashboards(self) -> list[int]:
        """The pids of the dashboard processes serve has started and not yet reaped."""
        return children(self.proc.pid)


def make_tokens(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A tokens file with an operator (alice) and a viewer (victor); returns it and each name's token."""
    tokens = {"alice": secrets.token_urlsafe(24), "victor": secrets.token_urlsafe(24)}
    path = tmp / "tokens"
    path.write_text(
        f"# who may open the dashboard\n{tokens['alice']} alice operator\n\n{tokens['victor']} victor viewer\n"
    )
    return path, tokens


@contextmanager
def serving(cli: Cli, *args: str) -> Iterator[Served]:
    """``loopdeck serve --port 0 ARGS``, until the block ends (SIGTERM, then kill)."""
    proc = subprocess.Popen(
        cli.argv("serve", "--port", "0", *args),
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=open(cli.tmp / "serve.err", "w"),  # noqa: SIM115 - the child keeps its own copy
        text=True,
        cwd=cli.tmp,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://\S+?:(\d+)/", line)
        assert found, f"serve did not say where it listens: {line!r} {(cli.tmp / 'serve.err').read_text()}"
        yield Served(proc, f"http://127.0.0.1:{found.group(1)}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def describe(pids: list[int]) -> str:
    """Each process's pid, state and command line (for a failure message)."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            cmd, state = "(gone)", "?"
        out.append(f"{pid} [{state}] {cmd.strip()}")
    return "; ".join(out) or "none"


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (zombies excluded), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
