"""The `tempo-verl` command: one typer app whose subcommands live beside the code they drive."""

from __future__ import annotations

import typer

from tempo_verl.data.cli import app as data_app

app = typer.Typer(
    name="tempo-verl",
    help="TEMPO tree-structured credit assignment for verl: demo, tree pictures, data preparation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
