"""Command-line entry point: `virnucpro <stage> ...`."""

from __future__ import annotations

import signal
import sys

import typer

from virnucpro.errors import Terminated, VirNucProError, describe_os_error
from virnucpro.folder_lock import folder_locks

# Importing a command module registers its commands on the app, in the order `--help` lists them.
from virnucpro.cli import (  # noqa: F401  isort: skip
    run_cmd,
    prepare_cmd,
    embed_cmd,
    predict_cmd,
    report_cmd,
    calibrate_cmd,
    train_cmd,
    models_cmd,
    download_cmd,
    classifier_cmd,
    gpu_slots_cmd,
)
from virnucpro.cli.app import app

try:  # typer 0.22+ carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:
    from click.exceptions import ClickException, UsageError

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


def _fail(message: str, code: int) -> None:
    print(f"virnucpro: error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Run the CLI. Every failure a user can act on is one line on stderr and a non-zero exit code:
    our own errors, usage errors (an unknown option, a value out of bounds) and the operating
    system's (disk full, read-only folder), which name the file. Anything else is a bug and keeps
    its traceback."""
    for signum in TERMINATING_SIGNALS:
        signal.signal(signum, _raise_terminated)
    try:
        with folder_locks():
            code = app(standalone_mode=False)
    except ClickException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `virnucpro` alone: the help, not an error
            typer.echo(err.ctx.get_help())
            sys.exit(0)
        command = err.ctx.command_path if isinstance(err, UsageError) and err.ctx else "virnucpro"
        _fail(f"{err.format_message()} (see `{command} --help`)", err.exit_code)
    except typer.Abort:
        print("virnucpro: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except VirNucProError as err:
        _fail(str(err), err.exit_code)
    except OSError as err:
        _fail(describe_os_error(err), 1)
    except KeyboardInterrupt:
        code = INTERRUPTED
    except Terminated as err:
        # 128 + the signal's number, as a shell reports a command the signal killed.
        print(f"virnucpro: terminated by {signal.Signals(err.signum).name}", file=sys.stderr)
        sys.exit(128 + err.signum)
    if code == INTERRUPTED:
        print("virnucpro: interrupted", file=sys.stderr)
    sys.exit(code or 0)
