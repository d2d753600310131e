"""The `virnucpro` command group. Each stage's command lives in a module of its own beside this
one and only wires options to the stage function; stages never import the CLI."""

from __future__ import annotations

import typer

from virnucpro import __version__

app = typer.Typer(
    name="virnucpro",
    help=(
        "Find viral sequences in DNA reads or contigs with VirNucPro's method: chunk, translate in six "
        "frames, embed with DNABERT-S and ESM-2, score with an MLP. Run the whole pipeline with "
        "`virnucpro run`, or one stage at a time as the Nextflow pipeline does."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"virnucpro {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find viral sequences with VirNucPro's method."""
