"""House style that a tool can check: no function in seqgen/ longer than 120 lines (the aim is
about 100; CONTRIBUTING.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "seqgen"
MAX_LINES = 120


def test_no_function_is_longer_than_120_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                lines = node.end_lineno - start + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} "
                                f"({lines} lines)")
    assert not long, "functions over 120 lines (cut them into helpers):\n" + "\n".join(long)
