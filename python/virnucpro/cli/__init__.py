"""Command-line entry point: `virnucpro <stage> ...`."""

from __future__ import annotations

import sys

from virnucpro.errors import VirNucProError

# Importing a command module registers its commands on the app, in the order `--help` lists them.
from virnucpro.cli import (  # noqa: F401  isort: skip
    run_cmd,
    prepare_cmd,
    embed_cmd,
    predict_cmd,
    report_cmd,
    train_cmd,
    models_cmd,
    download_cmd,
    classifier_cmd,
    gpu_slots_cmd,
)
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
