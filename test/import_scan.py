"""Every absolute import statement of a Python file, lazy ones inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path


def absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each absolute import in ``path``; ``from sfm_ros import x`` gives
    ``sfm_ros.x`` (a subpackage), any other ``from a.b import c`` gives ``a.b``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names = [f"{base}.{alias.name}" if base == "sfm_ros" else base for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names]
    return found
