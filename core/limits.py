"""Bounds on everything a plan, a command line or an agent can hand loopdeck.

No input may crash, hang or bloat the engine: every number has a range, every
document a nesting depth and an expanded size. Values outside are refused
with the limit named (a plan error is located, a command-line value exits 2).
The README's "Limits" table lists these; keep the two in step.
"""

from __future__ import annotations

MAX_DEPTH = 64
"""Nesting of JSON/YAML values: plans, step inputs, edited inputs, agent outputs."""

MAX_NODES = 1_000_000
"""Values in one document once YAML aliases are expanded (a 600-byte alias bomb expands to billions)."""

MAX_CHARS = 16_000_000
"""Characters of text in one document, aliases expanded."""

MAX_EXPANSION = 10
"""How many times YAML aliases may repeat a document's written values (beyond 10,000 values or 1 MB of text)."""

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
"""Size of a plan, agents or steps file."""

MAX_INT = 2**63 - 1
"""Integers anywhere in a document: what a database column and every JSON reader can hold."""

MAX_STEPS = 100_000
MAX_AGENTS = 1_000
MAX_TEXT = 100_000
"""Characters of a goal, a title or a reason."""

MAX_TOKENS = 10**15
"""A run's token budget."""

MAX_ATTEMPT_TOKENS = 10**9
"""Tokens one attempt may report or reserve."""

MAX_SECONDS = 7 * 86_400.0
"""Timeouts, latencies, backoff delays and cooldowns: a week at most."""

MAX_ATTEMPTS = 1_000
MAX_CONCURRENCY = 10_000
MAX_ITERATIONS = 10**9
MAX_BACKOFF_FACTOR = 1_000.0
MAX_THRESHOLD = 1_000_000
MAX_LIST_LIMIT = 100_000
"""Rows a listing command (``runs --limit``) may ask for."""
MAX_USD = 10.0**9  # a cost budget: a billion dollars is past any run's
