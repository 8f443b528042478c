"""Atomic outputs (tempo_verl/outputs.py): whole or nothing, never mixed, never two runs in one folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempo_verl.outputs import MARKER, OutputBusyError, OutputFolderError, atomic_output_dir, atomic_write_text

REPO = Path(__file__).resolve().parents[1]

# A run that writes `files` into `out` and, inside the block, waits for `go` to exist (argv: out, go, name).
_RUN = """
import sys, time
from pathlib import Path
from tempo_verl.outputs import OutputBusyError, atomic_output_dir

out, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
try:
    with atomic_output_dir(out) as tmp:
        (tmp / f"{name}.txt").write_text(name)
        (tmp / "summary.json").write_text(name)
        Path(str(go) + ".entered").write_text("")
        while not go.exists():
            time.sleep(0.02)
except OutputBusyError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


def _start(out: Path, go: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _RUN, str(out), str(go), name], env=env, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_atomic_write_text_replaces_whole_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "sub" / "page.html"
    assert atomic_write_text(path, "first") == path
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "dir", "x")  # a folder is not replaced by a file
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dir", "page.html", "sub"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_rerun_replaces_the_folder_whole_and_a_failed_run_changes_nothing(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "old.txt").write_text("old")
        (tmp / "summary.json").write_text("old")
        assert not out.exists()  # nothing is presented before the run succeeds
    with pytest.raises(RuntimeError, match="interrupted"), atomic_output_dir(out) as tmp:
        (tmp / "summary.json").write_text("partial")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "old.txt", "summary.json"]
    assert (out / "summary.json").read_text() == "old"
    with atomic_output_dir(out) as tmp:
        (tmp / "summary.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "summary.json"]  # no old file presented as this run's
    assert (out / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # no temporary folder left
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputFolderError, match="not a folder"), atomic_output_dir(tmp_path / "file"):
        pass


def test_a_folder_no_run_wrote_is_never_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    ran = False
    with pytest.raises(OutputFolderError, match="no tempo-verl run wrote"), atomic_output_dir(mine):
        ran = True
    assert not ran and (mine / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_output_dir(empty) as tmp:  # an empty folder is fine, and then it is ours
        (tmp / "a.txt").write_text("a")
    with atomic_output_dir(empty) as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in empty.iterdir()) == [MARKER, "b.txt"]


def test_two_writers_of_one_process_into_one_folder(tmp_path):
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        with pytest.raises(OutputBusyError, match="another run"), atomic_output_dir(tmp_path / "out"):
            pass
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "a.txt"]


def test_two_processes_into_one_folder_the_second_fails_clearly_the_first_lands_whole(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    first = _start(out, go, "first")
    _wait_for(Path(str(go) + ".entered"))
    second = _start(out, tmp_path / "go-second", "second")
    assert second.wait(timeout=120) == 3
    assert "another run is writing this output folder" in second.stderr.read()
    go.write_text("")
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "first.txt", "summary.json"]
    # Once the first run is done, the next one replaces its folder whole.
    (tmp_path / "go-third").write_text("")
    third = _start(out, tmp_path / "go-third", "third")
    assert third.wait(timeout=120) == 0, third.stderr.read()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "summary.json", "third.txt"]
