"""No function of the package takes more than MAX_PARAMETERS parameters (self and cls not counted):
settings that travel together travel as one options object (`EmbeddingOptions`, `ReportOptions`,
`RunOptions`, ...), built once from the command line and passed down.

The one exception is a command's function under `@app.command(...)`: typer reads each command-line
option from one parameter of it, so it has one parameter per option by construction; it builds the
options objects and passes them on. Read with `ast`, nothing imported.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

MAX_PARAMETERS = 8


def source_root() -> Path:
    return Path(os.environ.get("VIRNUCPRO_SOURCE", Path(__file__).resolve().parents[2] / "python"))


def is_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with `<something>.command(...)`, typer's way of declaring a command."""
    for decorator in function.decorator_list:
        call = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(call, ast.Attribute) and call.attr == "command":
            return True
    return False


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = function.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return len([name for name in names if name not in ("self", "cls")])


def offenders(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "virnucpro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not is_command(node):
                count = parameter_count(node)
                if count > MAX_PARAMETERS:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {count} parameters")
    return found


def test_no_function_takes_more_than_eight_parameters():
    found = offenders(source_root())
    assert not found, f"more than {MAX_PARAMETERS} parameters (pass an options object):\n" + "\n".join(found)
