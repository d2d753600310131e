"""Command-line entry point: `virnucpro <stage> ...`."""

from __future__ import annotations

import sys

from virnucpro.errors import VirNucProError

# Importing a command module registers its commands on the app.
from virnucpro.cli import prepare_cmd  # noqa: F401  isort: skip
from virnucpro.cli import classifier_cmd, download_cmd, predict_cmd, report_cmd, run_cmd, train_cmd  # noqa: F401  isort: skip
from virnucpro.cli.app import app


def main() -> None:
    """Run the CLI; user-fixable errors become one line on stderr and their exit code."""
    try:
        app()
    except VirNucProError as err:
        print(f"virnucpro: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("virnucpro: interrupted", file=sys.stderr)
        sys.exit(130)
