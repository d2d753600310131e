"""An environment for a `virnucpro` subprocess in which `import Bio` fails, as on the lent GPU
machine (no Biopython installed)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import cli_env

BLOCKER = """raise ModuleNotFoundError("No module named 'Bio' (hidden by the test)", name="Bio")\n"""


def env_without_biopython(folder: Path) -> dict[str, str]:
    """`cli_env()` with a `Bio` package first on the path whose import fails, as if not installed."""
    (folder / "Bio").mkdir(parents=True, exist_ok=True)
    (folder / "Bio" / "__init__.py").write_text(BLOCKER)
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env["PYTHONPATH"]])
    return env
