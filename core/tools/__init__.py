"""Tools an agent may call: skills (Python callables) now, MCP servers' tools next; one ``Toolbox`` per run.

schema.py   a Python function's arguments as JSON Schema (from its signature and type hints)
skills.py   a skill as a tool: its spec, its hints (``@tool(destructive=True)``), calling it
toolbox.py  the tools a run's agents use, by name; arguments checked against the schema
"""

from core.tools.skills import tool
from core.tools.toolbox import Toolbox, ToolError

__all__ = ["ToolError", "Toolbox", "tool"]
