"""Command-line entry point: `virnucpro <stage> ...`."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import traceback

import typer

from virnucpro import __version__
from virnucpro.errors import InternalError, Terminated, VirNucProError, describe_os_error, noted_output_folder
from virnucpro.files.lock import folder_locks

# Importing a command module registers its commands on the app, in the order `--help` lists them.
from virnucpro.cli import (  # noqa: F401  isort: skip
    run,
    prepare,
    embed_dna,
    embed_protein,
    embed,
    predict,
    report,
    calibrate,
    train,
    make_test_models,
    model_identity,
    download_models,
    convert_classifier,
    claim_gpus,
)
from virnucpro.cli.app import app

try:  # typer 0.22+ carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:
    from click.exceptions import ClickException, UsageError

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug, not something the user can fix
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


def _fail(message: str, code: int) -> None:
    print(f"virnucpro: error: {message}", file=sys.stderr)
    sys.exit(code)


def write_crash_log(err: BaseException) -> str | None:
    """The traceback of `err` (and of a worker's, for an `InternalError`) in a new file in the
    command's output folder, or the temporary folder when there is none or it cannot be written;
    its path, or None when no file could be written."""
    text = "".join(
        [
            f"virnucpro {__version__}, python {sys.version.split()[0]}, pid {os.getpid()}\n",
            f"command: {' '.join(sys.argv)}\n\n",
            *traceback.format_exception(err),
            *(["\nin the worker:\n", err.details] if isinstance(err, InternalError) else []),
        ]
    )
    name = f"virnucpro-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (noted_output_folder(), tempfile.gettempdir()):
        if folder is None or not os.path.isdir(folder):
            continue
        try:
            # A new file of its own (never one that exists), readable by its owner only: a
            # traceback may show paths and values.
            descriptor = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(descriptor, "w", encoding="utf-8", errors="replace") as out:
                out.write(text)
            return os.path.join(folder, name)
        except OSError:
            continue
    return None


def _internal_error(err: BaseException) -> None:
    """A bug: one line naming it and the crash log that holds its traceback, exit status 70."""
    where = write_crash_log(err)
    first = (str(err).strip().splitlines() or [""])[0][:200]
    what = (
        f"{type(err).__name__}: {first}"
        if first and not isinstance(err, InternalError)
        else first or type(err).__name__
    )
    details = f"details in {where}" if where else "no crash log could be written"
    print(f"virnucpro: internal error: {what}; please report it ({details})", file=sys.stderr)
    sys.exit(INTERNAL_ERROR)


def main() -> None:
    """Run the CLI. Every failure a user can act on is one line on stderr and a non-zero exit code:
    our own errors, usage errors (an unknown option, a value out of bounds) and the operating
    system's (disk full, read-only folder), which name the file. Anything else is a bug: one line
    too, exit status 70, its traceback in a crash log that the line names."""
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
    except Exception as err:  # the one place that turns a bug into one line
        _internal_error(err)
    if code == INTERRUPTED:
        print("virnucpro: interrupted", file=sys.stderr)
    sys.exit(code or 0)
