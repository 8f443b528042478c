"""Print the Python interpreters on this machine whose version setup.py's ``python_requires`` admits, one a line.

CI runs the whole suite on each (``.ci/run``). Looked for: ``python3.N`` on PATH and pyenv's versions.
Only ``>=``, ``>``, ``<=``, ``<``, ``==`` and ``!=`` on ``major.minor`` are understood (an error otherwise).
"""

from __future__ import annotations

import glob
import operator
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne}


def admitted(spec: str, version: tuple[int, int]) -> bool:
    """Whether ``major.minor`` satisfies every clause of ``spec`` (e.g. ``>=3.11,<3.12``)."""
    ok = True
    for clause in spec.split(","):
        match = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(\d+)\.(\d+)\s*", clause)
        if not match:
            raise SystemExit(f"setup.py python_requires: cannot read the clause {clause!r}")
        ok &= OPS[match[1]](version, (int(match[2]), int(match[3])))
    return ok


def main() -> None:
    spec = re.search(r'python_requires="([^"]+)"', (ROOT / "setup.py").read_text())[1]
    candidates = [shutil.which(f"python3.{minor}") for minor in range(8, 16)]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/3.*/bin/python3"))
    seen = set()
    for path in filter(None, candidates):
        probe = subprocess.run([path, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode != 0:  # e.g. a pyenv shim of a version that is not active here
            continue
        version = tuple(int(x) for x in probe.stdout.split())
        if version not in seen and admitted(spec, version):
            seen.add(version)
            print(path)


if __name__ == "__main__":
    main()
