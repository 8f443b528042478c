"""The one patch mechanism: callbacks after import, wrappers applied once per feature, problems kept per feature."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tempo_verl.plugin import patch


@pytest.fixture
def fresh_module(tmp_path, monkeypatch):
    """A module name nobody imported yet, importable from ``tmp_path``."""
    name = f"tempo_test_mod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 41\n\ndef double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def no_problems(monkeypatch):
    """This test's own problem record (the process's stays as it was)."""
    monkeypatch.setattr(patch, "_problems", {})


def test_callback_runs_after_the_module_executed_and_at_once_if_imported(fresh_module):
    seen = []
    patch.when_imported("tempo", fresh_module, lambda m: seen.append(m.VALUE))
    assert seen == []
    module = __import__(fresh_module)
    assert seen == [41]
    patch.when_imported("tempo", fresh_module, lambda m: seen.append(m.VALUE + 1))  # already imported: at once
    assert seen == [41, 42] and module.VALUE == 41


def test_a_failing_callback_never_breaks_the_import_and_is_a_problem_of_its_feature_only(
    fresh_module, no_problems, caplog
):
    def broken(module):
        raise KeyError("patched attribute is gone")

    patch.when_imported("tempo_tree", fresh_module, broken)
    with caplog.at_level("ERROR", logger="tempo_verl.plugin.patch"):
        module = __import__(fresh_module)
    assert module.VALUE == 41  # the import itself went through
    assert "broken failed" in caplog.text
    assert patch.problems("tempo") == []
    patch.check("tempo")  # the estimator's runs are not affected
    assert len(patch.problems("tempo_tree")) == 1 and "patched attribute is gone" in patch.problems("tempo_tree")[0]
    with pytest.raises(RuntimeError) as err:
        patch.check("tempo_tree")
    message = str(err.value)
    assert message.startswith("actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree cannot run")
    assert "patched attribute is gone" in message and "\n" not in message


def test_wrap_applies_once_per_feature_and_calls_the_original(fresh_module, no_problems):
    module = __import__(fresh_module)
    original = module.double

    def plus(k):
        def make(fn):
            return lambda x: fn(x) + k

        return make

    assert patch.wrap("tempo", module, "double", plus(1), ["x"])
    assert patch.wrap("tempo", module, "double", plus(100), ["x"])  # already wrapped for tempo: unchanged
    assert module.double(3) == 7
    assert patch.wrap("tempo_tree", module, "double", plus(10), ["x"])  # another feature wraps it once more
    assert module.double(3) == 17 and module.double.__wrapped__.__wrapped__ is original
    assert patch.problems("tempo") == patch.problems("tempo_tree") == []


def test_wrap_records_what_is_missing_for_its_feature(fresh_module, no_problems):
    module = __import__(fresh_module)
    assert not patch.wrap("tempo", module, "triple", lambda fn: fn)
    assert not patch.wrap("tempo", module, "double", lambda fn: fn, ["x", "y"])  # not the function it was written for
    assert patch.problems("tempo") == [
        f"{fresh_module}.triple: triple not found",
        f"{fresh_module}.double: double(x, y) not found",
    ]
    assert patch.problems("tempo_tree") == []
    with pytest.raises(RuntimeError, match=r"algorithm.adv_estimator=tempo cannot run: .*triple not found"):
        patch.check("tempo")


def test_without_verl_import_tempo_verl_installs_no_import_machinery():
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
