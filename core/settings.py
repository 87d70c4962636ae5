"""loopdeck's settings: the configuration file and the ``LOOPDECK_*`` environment, one validated model.

The file is ``$LOOPDECK_CONFIG``, else ``$XDG_CONFIG_HOME/loopdeck/config.toml``
(``~/.config/loopdeck/config.toml``). Highest first: a command-line flag, the
environment, the file, the built-in defaults (for a plan's own fields, the
plan and a profile come between the flags and the environment: see
``core.model.layers``). pydantic-settings merges the sources; the file is
parsed here so that a mistake is reported with its file, line and field.

Read when a command needs them, never at import, so a bad value cannot stop
``--help``; a bad value is a ``BadInput`` that names where it is and what it
must be. Loaded once per process and state of the file and environment.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from core.errors import BadInput, PlanError, PlanIssue
from core.limits import MAX_AGENTS
from core.locations import CONFIG_VAR, DEFAULT_LEASE_S, PREFIX, config_path
from core.model.layers import Defaults, layered
from core.model.plan import AgentConfig, Plan, read_plan_data, validate_plan
from core.model.profile import NAME_PATTERN, PolicyPatch, Profile, patch_fields
from core.model.tools import ApprovalRule, McpServer

MAX_CHILD_DEPTH = 8  # plan files naming plan files (a file naming itself would never end)
FILE_ONLY = frozenset({"agents", "mcp_servers", "approval_rules", "profiles"})  # tables; no variable sets them
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
_PART = r"(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')"
_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_KEY = re.compile(rf"^({_PART}(?:\s*\.\s*{_PART})*)\s*=")  # a TOML key (dotted, quoted parts allowed) and its =


class Settings(BaseSettings):
    """Everything loopdeck reads from its configuration file and ``LOOPDECK_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, env_nested_delimiter="__", extra="forbid", defer_build=True
    )

    db: str | None = Field(None, description="database URL or SQLite file path (--db wins)")
    user: str | None = Field(None, min_length=1, max_length=200, description="operator name (--user wins)")
    lease_s: float = Field(DEFAULT_LEASE_S, ge=0.5, le=3600, description="seconds a run's lease lasts unless renewed")
    agents_file: str | None = Field(None, description="the planner's agents file (variable: LOOPDECK_AGENTS)")
    theme: str | None = Field(
        None, max_length=100, description="the dashboard's theme, e.g. textual-light (`ctrl+p` lists them)"
    )
    notify: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Apprise URLs told about every run (variable: space or comma separated)"
    )
    policy: PolicyPatch = Field(
        default_factory=PolicyPatch,
        description="policy defaults for every plan (variables: LOOPDECK_POLICY__FIELD; LOOPDECK_TOKEN_BUDGET)",
    )
    agents: dict[Name, AgentConfig] = Field(
        default_factory=dict, max_length=MAX_AGENTS, description="an agent library: plans name agents they lack"
    )
    mcp_servers: dict[Name, McpServer] = Field(default_factory=dict, max_length=100)
    approval_rules: list[ApprovalRule] = Field(default_factory=list, max_length=1000, description="after the plan's")
    profiles: dict[Name, Profile] = Field(default_factory=dict, max_length=1000)

    @field_validator("mcp_servers")
    @classmethod
    def _no_stored_secrets(cls, servers: dict[str, McpServer]) -> dict[str, McpServer]:
        """A server a plan takes from here is stored with the plan's run: its secrets stay in variables."""
        for name, server in servers.items():
            for key, value in server.env.items():
                if not _VARIABLE.fullmatch(value):
                    raise ValueError(
                        f"mcp_servers.{name}.env.{key}: write ${{NAME}} and put the value in that environment "
                        "variable (a plan that uses this server is stored with its run)"
                    )
            query = (server.url or "").partition("?")[2]
            if query and "${" not in query:
                raise ValueError(f"mcp_servers.{name}.url: a query may hold a token; name it as ${{NAME}} instead")
        return servers

    @field_validator("notify", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [url for url in re.split(r"[\s,]+", value.strip()) if url] if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file = init_settings.init_kwargs.pop("_file", {}) if isinstance(init_settings, InitSettingsSource) else {}
        return init_settings, Environment(settings_cls), FileSource(settings_cls, file)

    def policy_defaults(self) -> dict[str, Any]:
        """The policy fields the environment and the file set (what a plan that is silent on them gets)."""
        return patch_fields(self.policy)

    def defaults(self) -> Defaults:
        """What lies under every plan (``core.model.layers``), in the plan's JSON form."""
        return Defaults(
            policy=self.policy_defaults(),
            agents={
                name: {"kind": a.kind, **a.model_dump(mode="json", exclude_unset=True)}
                for name, a in self.agents.items()
            },
            mcp_servers={name: s.model_dump(mode="json", exclude_unset=True) for name, s in self.mcp_servers.items()},
            approval_rules=[r.model_dump(mode="json", exclude_unset=True) for r in self.approval_rules],
            profiles=dict(self.profiles),
            source=f"config {config_path()}",
        )


class Environment(EnvSettingsSource):
    """The ``LOOPDECK_*`` variables. The file's tables have none; ``LOOPDECK_AGENTS`` names the planner's agents
    file (it predates the file's ``[agents]`` table); ``LOOPDECK_TOKEN_BUDGET`` is the policy's ``token_budget``."""

    RENAMED: ClassVar[dict[str, str]] = {"agents_file": "loopdeck_agents"}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in FILE_ONLY:
            return None, field_name, False
        if field_name in self.RENAMED:
            name = self.RENAMED[field_name]
            return self.env_vars.get(name), name, False
        return super().get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = {k: v for k, v in super().__call__().items() if k not in FILE_ONLY}  # (LOOPDECK_AGENTS__W__KIND too)
        budget = self.env_vars.get("loopdeck_token_budget")
        if budget not in (None, ""):
            policy = data.setdefault("policy", {})
            if isinstance(policy, dict):
                policy.setdefault("token_budget", budget)
        return data


class FileSource(PydanticBaseSettingsSource):
    """The configuration file's tables, parsed by ``load`` (which knows the lines, for errors)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def resolve_plan(
    data: Any, source: str | None = None, profile: str | None = None
) -> tuple[Plan, dict[str, Any] | None]:
    """A plan (raw data from a file or a template) with the configuration and ``profile`` under it, validated;
    and the profile's record for the run (None without one). Raises ``PlanError`` naming every problem."""
    if isinstance(data, dict):
        data = copy.deepcopy(data)
        _read_child_plans(data, Path(source).parent if source and Path(source).is_file() else Path.cwd())
        data, record = layered(data, load_settings().defaults(), profile)
    else:
        record = None
    return validate_plan(data, source), record


def _read_child_plans(data: dict[str, Any], base: Path, depth: int = 0) -> None:
    """``plan: FILE`` on a sub_agent step: the file's plan, read now (relative to the plan that names it) and
    kept in the stored plan, so the child runs what was read at the start, wherever it continues."""
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not (isinstance(step, dict) and step.get("type") == "sub_agent" and isinstance(step.get("plan"), str)):
            continue
        if depth >= MAX_CHILD_DEPTH:
            raise PlanError([PlanIssue(f"steps[{i}].plan", f"child plans nest deeper than {MAX_CHILD_DEPTH} files")])
        path = base / Path(step["plan"]).expanduser()
        child = read_plan_data(path)
        if isinstance(child, dict):
            _read_child_plans(child, path.parent, depth + 1)
        step["plan"] = child


# -- loading ----------------------------------------------------------------------------------------


def load_settings(**flags: Any) -> Settings:
    """The settings now: ``flags`` (``db``, ``user``; None means not given) over the environment over the file."""
    path = config_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    environ = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
    given = tuple(sorted((k, v) for k, v in flags.items() if v is not None))
    return _load(str(path), stamp, environ, given)


@lru_cache(maxsize=8)
def _load(path: str, stamp: int | None, environ: tuple[tuple[str, str], ...], flags: tuple[Any, ...]) -> Settings:
    text, data = read_file(Path(path), named=bool(os.environ.get(CONFIG_VAR, "").strip()))
    try:
        return Settings(**dict(flags), _file=data)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise BadInput(describe(exc, Path(path), text, data, dict(flags))) from None
    except SettingsError as exc:  # a variable that is not even the right shape (JSON where JSON is needed)
        named = ", ".join(k for k, _ in environ if k.startswith(PREFIX)) or "a LOOPDECK_ variable"
        raise BadInput(f"cannot read the LOOPDECK_ variables ({named}): {exc}") from None


def read_file(path: Path, named: bool = False) -> tuple[str, dict[str, Any]]:
    """The file's text and tables ({} when there is no file; a file ``LOOPDECK_CONFIG`` names must exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise BadInput(f"{CONFIG_VAR} names {path}, which does not exist") from None
        return "", {}
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the configuration file {path}: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise BadInput(f"{where}: not valid TOML: {message}") from None


def describe(exc: ValidationError, path: Path, text: str, data: dict[str, Any], flags: dict[str, Any]) -> str:
    """Every problem, each where it is: ``FILE:LINE: policy.max_concurrency: …`` or ``LOOPDECK_LEASE_S=…``."""
    problems = []
    env = Environment(Settings)()
    for err in exc.errors(include_url=False):
        loc = _without_tag(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in loc)
        if loc and loc[0] in flags:
            problems.append(f"--{loc[0]} {flags[loc[0]]!r} is not valid: {message}")
        elif holds(env, loc) or not holds(data, loc[:1]):
            problems.append(f"{variable_of(loc)}={err.get('input')!r} is not valid: {message}")
        else:
            problems.append(f"{path}:{line_of(text, loc)}: {field}: {message}")
    return problems[0] if len(problems) == 1 else "the configuration has problems:\n  " + "\n  ".join(problems)


def _without_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts an agent's kind after its name (``agents.w.llm.model``): a person reads ``agents.w.model``."""
    if len(loc) > 2 and loc[0] == "agents" and loc[2] in ("sim", "shell", "python", "llm"):
        return loc[:2] + loc[3:]
    return loc


def holds(data: Any, path: tuple[Any, ...]) -> bool:
    """Whether nested ``data`` holds ``path`` (every part of it)."""
    if not path:
        return False
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def variable_of(path: tuple[Any, ...]) -> str:
    """The ``LOOPDECK_*`` variable that sets ``path`` (two keep the names they had before the file)."""
    if path == ("agents_file",):
        return "LOOPDECK_AGENTS"
    if path == ("policy", "token_budget") and "LOOPDECK_POLICY__TOKEN_BUDGET" not in os.environ:
        return "LOOPDECK_TOKEN_BUDGET"
    return PREFIX + "__".join(str(p) for p in path).upper() if path else "a LOOPDECK_ variable"


def line_of(text: str, loc: tuple[Any, ...]) -> int:
    """The line of ``loc`` in TOML ``text``: its key if written, else the nearest table or key above it.

    A small reader of table headers and keys (tomllib keeps no positions):
    enough to point at ``[profiles.careful.policy]`` / ``max_concurrency = 0``.
    """
    best_line, best_depth = 1, -1
    table: tuple[Any, ...] = ()
    counts: dict[tuple[Any, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[\s*(.+?)\s*\]\]", stripped) or re.match(r"^\[\s*(.+?)\s*\]", stripped)
        if header:
            table = _dotted(header.group(1))
            if stripped.startswith("[["):
                counts[table] = counts.get(table, -1) + 1
                table = (*table, counts[table])
            path = table
        else:
            key = _KEY.match(stripped)
            if not key:
                continue
            path = (*table, *_dotted(key.group(1)))
        depth = _shared(path, loc)
        if depth == len(path) and depth > best_depth:
            best_line, best_depth = number, depth
    return best_line


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text))


def _shared(path: tuple[Any, ...], loc: tuple[Any, ...]) -> int:
    n = 0
    for a, b in zip(path, loc, strict=False):
        if str(a) != str(b):
            break
        n += 1
    return n
