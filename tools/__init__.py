"""What the model can call: the tool registry and the built-in tools."""

from .loader import tool
from .registry import Registry, Tool

__all__ = ["Registry", "Tool", "tool"]
