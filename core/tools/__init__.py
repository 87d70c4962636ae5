"""Tools an agent may call: skills (Python callables) and MCP servers' tools; one ``Toolbox`` per run.

schema.py   a Python function's arguments as JSON Schema (from its signature and type hints)
skills.py   a skill as a tool: its spec, its hints (``@tool(destructive=True)``), calling it
toolbox.py  the tools a run's agents use, by name; arguments checked against the schema
"""

from core.tools.mcp import ServerFailure
from core.tools.skills import ToolError, tool
from core.tools.toolbox import Toolbox, check_arguments, describe_tools

__all__ = ["ServerFailure", "ToolError", "Toolbox", "check_arguments", "describe_tools", "tool"]
