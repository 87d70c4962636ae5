"""``loopdeck config``: every effective setting, where it comes from, and no secret in sight.

A value comes from a flag (``--db``, ``--user``), a ``LOOPDECK_*`` variable,
the configuration file, or the built-in default, highest first. Secrets are
masked here, once: a database password, notification URLs (scheme and host
only), MCP servers' environment values and URL queries, agents' header values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.config import display_url
from core.model.policy import Policy
from core.redaction import url_origin
from core.settings import Environment, Settings, config_path, holds, load_settings, read_file, variable_of

MASK = "***"


@dataclass(frozen=True)
class Entry:
    key: str  # dotted: "policy.max_concurrency", "agents.writer"
    value: Any  # JSON, secrets masked
    source: str  # "flag --db", "env LOOPDECK_DB", "file", "default"


def effective_settings(**flags: Any) -> tuple[str, bool, list[Entry]]:
    """The configuration file's path, whether it exists, and every effective setting with its source."""
    given = {k: v for k, v in flags.items() if v is not None}
    current = load_settings(**given)
    path = config_path()
    _, file = read_file(path, named=bool(os.environ.get("LOOPDECK_CONFIG", "").strip()))
    env = Environment(Settings)()
    entries = [_entry(("db",), masked_db(current.db), given, env, file)]
    entries += [_entry((name,), getattr(current, name), given, env, file) for name in ("user", "lease_s")]
    entries.append(_entry(("agents_file",), current.agents_file, given, env, file))
    entries.append(_entry(("theme",), current.theme, given, env, file))
    entries.append(_entry(("notify",), [_notify(u) for u in current.notify], given, env, file))
    defaults = Policy().model_dump(mode="json")
    for name, value in {**defaults, **current.policy_defaults()}.items():
        entries.append(_entry(("policy", name), value, given, env, file))
    for name, agent in current.agents.items():
        shown = {"kind": agent.kind, **agent.model_dump(mode="json", exclude_defaults=True)}
        entries.append(_entry(("agents", name), _masked_agent(shown), given, env, file))
    for name, server in current.mcp_servers.items():
        entries.append(_entry(("mcp_servers", name), _masked_server(server.model_dump(mode="json")), given, env, file))
    rules = [r.model_dump(mode="json", exclude_none=True) for r in current.approval_rules]
    entries.append(_entry(("approval_rules",), rules, given, env, file))
    for name, profile in current.profiles.items():
        entries.append(_entry(("profiles", name), profile.summary(), given, env, file))
    return str(path), path.exists(), entries


def _entry(path: tuple[str, ...], value: Any, flags: dict[str, Any], env: dict[str, Any], file: Any) -> Entry:
    key = ".".join(path)
    if path[0] in flags:
        return Entry(key, value, f"flag --{path[0]}")
    if holds(env, path):
        return Entry(key, value, f"env {variable_of(path)}")
    if holds(file, path):
        return Entry(key, value, "file")
    return Entry(key, value, "default")


def masked_db(url: str | None) -> str | None:
    return display_url(url) if url else url


def _notify(url: str) -> str:
    """Scheme and host: the rest of a notification URL (user, password, token, path) may be a secret."""
    return f"{url_origin(url)}/{MASK}"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    shown = display_url(url.split("?", 1)[0])
    return f"{shown}?{MASK}" if parts.query else shown


def _masked_server(server: dict[str, Any]) -> dict[str, Any]:
    if server.get("env"):
        server["env"] = dict.fromkeys(server["env"], MASK)
    if server.get("url"):
        server["url"] = _without_query(server["url"])
    return server


def _masked_agent(agent: dict[str, Any]) -> dict[str, Any]:
    if agent.get("headers"):
        agent["headers"] = dict.fromkeys(agent["headers"], MASK)
    if agent.get("env"):
        agent["env"] = dict.fromkeys(agent["env"], MASK)
    if agent.get("base_url"):
        agent["base_url"] = _without_query(agent["base_url"])
    return agent
