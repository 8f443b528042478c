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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
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


# ---- where an output folder can be published, and the lock file ------------------------------


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from tempo_verl.cli import app

    return CliRunner().invoke(app, args)


def _tree_dump(folder: Path) -> Path:
    """A real tree dump of one group of three responses."""
    import torch

    from tempo_verl.core.advantage import tempo_advantage_and_forest
    from tempo_verl.trees.writer import TreeDumpWriter

    responses = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 0]])
    attention = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0.5, 0, 0]])
    _, _, forest = tempo_advantage_and_forest(
        rewards, attention, index=["u"] * 3, responses=responses, response_attention_mask=attention
    )
    writer = TreeDumpWriter(folder, every=1, groups=4)
    assert writer.maybe_dump(1, forest, responses, attention, ["u"] * 3)
    writer.close()
    return folder


@pytest.mark.parametrize("out", [".", "/", ""])
@pytest.mark.parametrize("command", ["demo", "study", "tree"])
def test_out_dot_root_or_empty_is_one_clear_line(command, out, tmp_path, monkeypatch):
    """--out ., / or "": one line naming the option and what to do, exit 2, no Python error, no traceback."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    args = {
        "demo": ["demo", "--out", out, "--steps", "1", "--seeds", "1"],
        "study": ["study", "--out", out, "--quick", "--jobs", "1"],
        "tree": ["tree", str(_tree_dump(tmp_path / "dump")), "--out", out],
    }[command]
    result = _cli(args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tempo-verl {command}: error: "), result.output
    expected = {".": "is the current folder", "/": "the root folder cannot be replaced", "": "an empty path"}[out]
    assert (expected if command != "tree" else "it is a folder; name a file") in lines[0]
    assert "Traceback" not in result.output and "PosixPath" not in result.output
    assert sorted(os.listdir(tmp_path / "cwd")) == []


def _mount(kind: str, target: Path, tmp_path: Path) -> None:
    target.mkdir()
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "none", str(target)]
    else:
        (tmp_path / "bind-source").mkdir()
        cmd = ["mount", "--bind", str(tmp_path / "bind-source"), str(target)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip(f"this test mounts a {kind} folder, which needs root and a system that allows mount")


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_a_mount_point_is_refused_before_the_run_with_the_fix(kind, tmp_path):
    """A Docker volume's mount point as --out: refused before any work, not after it (the final rename fails)."""
    volume = tmp_path / "volume"
    _mount(kind, volume, tmp_path)
    try:
        ran = []
        fix = r"is a mount point.*Name a new folder inside it, e\.g\. .*tempo_out"
        with pytest.raises(OutputFolderError, match=fix), atomic_output_dir(volume):
            ran.append(True)
        assert not ran
        with atomic_output_dir(volume / "run") as tmp:  # a folder inside the volume: fine
            (tmp / "a.txt").write_text("a")
        assert (volume / "run" / "a.txt").read_text() == "a"
        result = _cli(["demo", "--out", str(volume), "--steps", "1", "--seeds", "1"])
        assert result.exit_code == 2 and "is a mount point" in result.output, result.output
        assert sorted(p.name for p in volume.iterdir()) == ["run"]
    finally:
        subprocess.run(["umount", str(volume)], check=True)


def test_the_lock_file_is_removed_when_the_run_ends(tmp_path):
    out = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    with atomic_output_dir(out) as tmp:
        assert lock.exists()
        (tmp / "a.txt").write_text("a")
    assert not lock.exists()
    with pytest.raises(RuntimeError, match="boom"), atomic_output_dir(out):
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_lock_on_a_removed_lock_file_is_not_taken(tmp_path, monkeypatch):
    """A run that opened the lock file just before its holder removed it locks the new file instead.

    Otherwise it would hold a lock on a removed file while a third run locks the one now at the path,
    and both would write the folder.
    """
    from tempo_verl import outputs

    out = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    with atomic_output_dir(out):
        stale = os.open(lock, os.O_RDWR)  # opened while the first run holds it...
    assert not lock.exists()  # ...which then ended and removed the file
    opened = []
    real_open = os.open

    def open_stale_first(path, flags, mode=0o777):
        opened.append(path)
        return stale if len(opened) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(outputs.os, "open", open_stale_first)
    with atomic_output_dir(out):
        held = [fd for fd in range(3, 256) if _is_lock_of(fd, lock)]
        assert lock.exists() and held, "the lock held is not the file at the lock's path"
        monkeypatch.setattr(outputs.os, "open", real_open)
        with pytest.raises(OutputBusyError), atomic_output_dir(out):  # and it excludes the next run
            pass
    assert len(opened) == 2 and not lock.exists()


def _is_lock_of(fd: int, path: Path) -> bool:
    try:
        held, now = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
