"""Who may open the web dashboard: a tokens file of ``TOKEN NAME ROLE`` lines.

Pure (no I/O but reading the file): ``serve`` loads it once at start, and the
access layer asks :meth:`Tokens.find` for each request. A token is compared
in constant time; it never leaves this module but as the cookie the browser
already holds.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# a name is recorded with every action and put on a command line: one plain word
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_TOKEN_LENGTH = 16  # short tokens are guessable over a network


class Role(StrEnum):
    OPERATOR = "operator"  # may act: approve, reject, retry, cancel...
    VIEWER = "viewer"  # a read-only dashboard


@dataclass(frozen=True)
class Identity:
    """Who a browser connection belongs to."""

    name: str
    role: Role

    @property
    def read_only(self) -> bool:
        return self.role is Role.VIEWER


@dataclass(frozen=True)
class _Entry:
    token: str
    identity: Identity


class TokensError(ValueError):
    """A tokens file that cannot be used; the message names the file and line."""


class Tokens:
    """The tokens of one file (loaded once; a change needs a restart of ``serve``)."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, candidate: str | None) -> Identity | None:
        """The identity a token belongs to, or None; every entry is compared (constant time per entry)."""
        if not candidate:
            return None
        found = None
        given = candidate.encode()
        for entry in self._entries:
            if hmac.compare_digest(entry.token.encode(), given):
                found = entry.identity
        return found

    def describe(self) -> str:
        """``2 operators, 1 viewer``: what ``serve`` prints at start (never a token)."""
        counts = {role: sum(e.identity.role is role for e in self._entries) for role in Role}
        return ", ".join(f"{n} {role.value}{'s' if n != 1 else ''}" for role, n in counts.items())


def load_tokens(path: str | Path) -> Tokens:
    """Read a tokens file; raise :class:`TokensError` naming the file and line of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokensError(f"tokens file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TokensError(f"tokens file {path}: is not UTF-8 text") from None
    return parse_tokens(text, str(path))


def parse_tokens(text: str, source: str = "tokens") -> Tokens:
    """``TOKEN NAME ROLE`` per line; blank lines and ``#`` comments are skipped."""
    entries: list[_Entry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line, f"{source}:{number}")
        if entry.token in seen:
            raise TokensError(
                f"{source}:{number}: this token is already given to another line; each token must be unique"
            )
        seen.add(entry.token)
        entries.append(entry)
    if not entries:
        raise TokensError(f"{source}: has no tokens; write one `TOKEN NAME ROLE` line per person")
    return Tokens(entries)


def _parse_line(line: str, where: str) -> _Entry:
    parts = line.split()
    if len(parts) != 3:
        raise TokensError(f"{where}: expected `TOKEN NAME ROLE` (3 words), found {len(parts)}")
    token, name, role = parts
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokensError(
            f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters; "
            "make one with `python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
        )
    if not NAME_PATTERN.match(name):
        raise TokensError(f"{where}: name {name!r} must be one word of letters, digits, '.', '_', '@' or '-'")
    try:
        parsed = Role(role)
    except ValueError:
        raise TokensError(f"{where}: role {role!r} is not one of: operator, viewer") from None
    return _Entry(token, Identity(name, parsed))
