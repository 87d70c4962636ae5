"""Secrets out of everything loopdeck stores or shows: outputs, errors, streamed text.

An agent's secrets (an API key read from the environment) can come back in
what a server says: an echoed request in an error body, or the key inside an
ordinary answer. Every text from an agent passes through a ``Redactor`` before
it is stored, published or printed. Two rules make that hold:

- redact first, then cut: cutting a message to length first can leave part
  of a key that no longer matches (``cut`` is the one way to shorten text);
- streamed text is redacted across pieces (``StreamRedactor`` holds back the
  tail that could be the start of a key until the next piece settles it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values would redact ordinary words
EDGE = 8  # a text ending in a key's first EDGE characters (or starting with its last) was cut mid-key


class Redactor:
    """Replaces every known secret in text and in JSON-like values."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_SECRET}
        self.secrets = sorted(found, key=len, reverse=True)  # longest first: a key containing another

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
            text = _cut_edges(text, secret)
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string (and mapping key) redacted."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        return value


def _cut_edges(text: str, secret: str) -> str:
    """A key cut at either end of ``text`` (by someone else's truncation) is removed too (keys over EDGE chars)."""
    if len(secret) <= EDGE:
        return text
    for n in range(len(secret) - 1, EDGE - 1, -1):
        if text.endswith(secret[:n]):
            return text[: len(text) - n] + REDACTED
    for n in range(len(secret) - 1, EDGE - 1, -1):
        if text.startswith(secret[-n:]):
            return REDACTED + text[n:]
    return text


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters with a marker; redact before calling this."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"…[{len(text) - limit} more chars]"


class StreamRedactor:
    """Passes streamed text on with secrets removed, even when a secret arrives split across pieces."""

    def __init__(self, redactor: Redactor, emit: Callable[[str], None]) -> None:
        self.redactor = redactor
        self.emit = emit
        self._pending = ""
        self._hold = max((len(s) - 1 for s in redactor.secrets), default=0)

    def add(self, piece: str) -> None:
        if not self.redactor:
            self.emit(piece)
            return
        text = self._pending + piece
        for secret in self.redactor.secrets:
            text = text.replace(secret, REDACTED)
        # the last ``hold`` characters may be the start of a secret: keep them for the next piece
        cut_at = max(0, len(text) - self._hold)
        ready, self._pending = text[:cut_at], text[cut_at:]
        if ready:
            self.emit(ready)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = self.redactor.text(self._pending), ""
            self.emit(text)


def url_origin(url: str) -> str:
    """A URL as events, logs and listings may name it: its scheme and host (never a user, password, path or
    token: a notification URL often carries its secret in one of them)."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    return f"{parts.scheme}://{host}" if parts.scheme else "a URL"
