"""The post-import mechanism: callbacks run once the module has executed, and never break its import."""

from __future__ import annotations

import sys

import pytest

from tempo_verl.plugin import post_import, state


@pytest.fixture
def fresh_module(tmp_path, monkeypatch):
    """A module name nobody imported yet, importable from ``tmp_path``."""
    name = f"tempo_test_mod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_callback_runs_after_the_module_executed_and_at_once_if_imported(fresh_module):
    seen = []
    post_import.when_imported(fresh_module, lambda m: seen.append(m.VALUE))
    assert seen == []
    module = __import__(fresh_module)
    assert seen == [41]
    post_import.when_imported(fresh_module, lambda m: seen.append(m.VALUE + 1))  # already imported: at once
    assert seen == [41, 42] and module.VALUE == 41


def test_a_failing_callback_never_breaks_the_import_and_is_reported(fresh_module, monkeypatch, caplog):
    monkeypatch.setattr(state, "hook_problems", [])
    monkeypatch.setattr(post_import, "hook_problems", state.hook_problems)

    def broken(module):
        raise KeyError("patched attribute is gone")

    post_import.when_imported(fresh_module, broken)
    with caplog.at_level("ERROR", logger="tempo_verl.plugin.post_import"):
        module = __import__(fresh_module)
    assert module.VALUE == 41  # the import itself went through
    assert "broken failed after importing" in caplog.text
    assert len(state.hook_problems) == 1 and "patched attribute is gone" in state.hook_problems[0]
    assert "could not be installed" in state.hook_error() and "patched attribute is gone" in state.hook_error()


def test_without_verl_import_tempo_verl_installs_no_import_machinery():
    import subprocess

    code = (
        "import importlib.abc, sys\n"
        "class NoVerl(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'verl' or name.startswith('verl.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoVerl())\n"
        "before = list(sys.meta_path)\n"
        "import torch, tempo_verl\n"
        "added = [type(f).__name__ for f in sys.meta_path if f not in before]\n"
        "r = torch.tensor([[1.0], [0.0]])\n"
        "adv, _ = tempo_verl.compute_tempo_advantage(r, torch.ones(2, 1), ['a', 'a'], torch.tensor([[3], [4]]))\n"
        "print(added, any(m == 'verl' or m.startswith('verl.') for m in sys.modules), adv.flatten().tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # No finder added, verl never imported, and the estimator works: [[2.0 * 0.7071...], [-...]].
    assert out.stdout.startswith("[] False "), out.stdout + out.stderr
    adv = [float(x) for x in out.stdout.split(" ", 2)[2].strip("[]\n").split(",")]
    assert adv[0] > 0 > adv[1]
