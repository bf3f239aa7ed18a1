"""A small MCP server for the custom agent example: notes, kept in memory, over stdio.

Built with the `mcp` package's `MCPServer` (FastMCP), which the Agents SDK already depends on.
Any MCP server works the same way: this one needs nothing but Python.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("Notes")
notes: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Write down a note."""
    notes.append(text)
    return f"Noted ({len(notes)} notes)."


@server.tool()
def list_notes() -> list[str]:
    """Every note, oldest first."""
    return notes


@server.tool()
def clear_notes() -> str:
    """Forget every note."""
    count = len(notes)
    notes.clear()
    return f"Forgot {count} notes."


if __name__ == "__main__":
    server.run()  # stdio
