"""`tempo-verl ... --help` at 80 columns: running text fills its lines, never broken mid-sentence."""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from tempo_verl.cli import app

COMMANDS = [[], ["demo"], ["study"], ["tree"], ["data"], ["data", "math"], ["data", "medqa"], ["data", "eval"]]


def _prose_lines(text: str) -> list[str]:
    """The help's running text: the lines outside the option boxes and the usage line."""
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith(("╭", "│", "╰", "Usage:")):
            lines.append("")
        else:
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tempo-verl")
def test_help_fills_its_lines_at_80_columns(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    lines = _prose_lines(result.output)
    assert any(lines), result.output
    for line, following in itertools.pairwise(lines):
        if line and following:
            # A line followed by more of its paragraph ends only because the next word did not fit.
            assert len(line) + 1 + len(following.split()[0]) > 80 - 2, f"broken early:\n{line}\n{following}"
