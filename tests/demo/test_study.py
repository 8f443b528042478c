"""`tempo-verl study`: the statistics on known inputs, censoring, the premise task's checker, and the
command end to end on the --quick protocol (schema, paired seeds, whole-or-nothing outputs)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.loop import prepare
from tempo_verl.demo.stats import censored_costs, paired_ratio, selection_score, time_to_target
from tempo_verl.demo.study import (
    PROTOCOLS,
    QUICK,
    Arm,
    Job,
    comparisons,
    cpu_model_and_flags,
    evaluation_lrs,
    parse_arms,
    parse_lrs,
    parse_seeds,
    train_job,
    tree_step,
    verdicts,
)
from tempo_verl.demo.study_report import NOT_A_RESULT
from tempo_verl.demo.task import ChainTask, RuleTask, make_task
from tempo_verl.outputs import MARKER

# ----- statistics ------------------------------------------------------------------------------


def test_time_to_target_counts_steps_and_tokens_through_the_hit() -> None:
    rewards = [0.1, 0.9, 0.1, 0.9, 0.9, 0.9]
    tokens = [10, 20, 30, 40, 50, 60]
    assert time_to_target(rewards, tokens, 0.8, window=3) == (6, 210)
    assert time_to_target(rewards, tokens, 0.8, window=1) == (2, 30)
    assert time_to_target([0.9, 0.9], [5, 5], 0.8, window=3) == (1, 5)  # the first steps average what there is
    assert time_to_target([0.1, 0.7, 0.79], [1, 1, 1], 0.8, window=1) is None
    with pytest.raises(ValueError, match="differ in length"):
        time_to_target([0.1], [1, 2], 0.8, 1)


def test_censored_seeds_count_at_their_budget_never_dropped() -> None:
    costs = censored_costs([12, None, 30], [60, 60, 60])
    assert costs.tolist() == [12.0, 60.0, 30.0]
    # A censored baseline seed makes the ratio larger than if it were dropped: it still counts.
    ratio = paired_ratio(censored_costs([None, 20], [60, 60]), censored_costs([30, 20], [60, 60]))["ratio"]
    assert ratio == pytest.approx(80 / 50)


def test_paired_ratio_on_known_inputs() -> None:
    same = paired_ratio(np.array([10.0, 20.0, 30.0]), np.array([10.0, 20.0, 30.0]))
    assert same == {"ratio": 1.0, "low": 1.0, "high": 1.0}
    half = paired_ratio(np.array([10.0, 20.0, 30.0]), np.array([5.0, 10.0, 15.0]))
    assert [half["ratio"], half["low"], half["high"]] == pytest.approx([2.0, 2.0, 2.0])
    # Two seeds: resamples give 20/10 = 2 (1/4), 30/25 = 1.2 (1/2) or 40/40 = 1 (1/4): the 95 % interval is [1, 2].
    two = paired_ratio(np.array([10.0, 20.0]), np.array([5.0, 20.0]))
    assert two["ratio"] == pytest.approx(1.2)
    assert two["low"] == pytest.approx(1.0) and two["high"] == pytest.approx(2.0)
    # Paired: the same resampled seeds for both arms. Costs that move together give a tight interval
    # even when the seeds differ a lot; unpaired resampling would give a wide one.
    base = np.array([10.0, 100.0, 20.0, 80.0, 40.0, 60.0, 15.0, 90.0, 30.0, 70.0])
    paired = paired_ratio(base, base / 1.25)
    assert paired["low"] == pytest.approx(1.25) and paired["high"] == pytest.approx(1.25)
    assert paired_ratio(base, base[::-1] / 1.25)["high"] > 1.5
    with pytest.raises(ValueError, match="equal 1-D"):
        paired_ratio(np.array([1.0, 2.0]), np.array([1.0]))


def test_selection_score_is_the_mean_reward_over_steps_and_seeds() -> None:
    assert selection_score([[0.0, 1.0], [0.5, 0.5]]) == pytest.approx(0.5)


# ----- the premise task ---------------------------------------------------------------------------


def test_rule_task_decisions_depend_on_the_prompt() -> None:
    task = RuleTask()
    assert task.score((1, 3, 8, 5), "mark odd : 3 yes , 8 no , 5 yes") == 1.0
    assert task.score((0, 3, 8, 5), "mark even : 3 no , 8 yes , 5 no") == 1.0
    # The same digit needs the opposite label under the other rule: no token-to-token rule decides it.
    assert task.score((0, 3, 8, 5), "mark even : 3 yes , 8 no , 5 yes") == 0.0
    for wrong in (
        "mark odd : 3 yes , 8 no , 5 no",  # a wrong decision
        "mark even : 3 yes , 8 no , 5 yes",  # the rule restated wrong
        "mark odd : 3 yes and 8 no , 5 yes",  # not a separator of this task
        "mark odd : 3 yes , 8 no",  # a missing item
        "mark odd : 3 yes , 8 no , 5 yes , 5 yes",  # an extra item
    ):
        assert task.score((1, 3, 8, 5), wrong) == 0.0, wrong
    # Responses are several times longer than their decisions.
    assert task.max_response_words + 1 >= 3 * task.num_digits
    # The default response width leaves room past <eos>, and parity keeps the demo's 16.
    rule, parity = DemoConfig(task="rule"), DemoConfig()
    assert rule.response_width(rule.make_task()) == 19 and parity.response_width(parity.make_task()) == 16


def test_rule_task_warm_up_data_guesses_and_prompts_cover_both_rules() -> None:
    task = make_task("rule")
    gen = torch.Generator().manual_seed(0)
    problems = task.sample_prompts(400, gen)
    assert {p[0] for p in problems} == {0, 1}
    scores = [task.score(p, task.format_example(p, gen)) for p in problems]
    assert 0.05 < sum(scores) / len(scores) < 0.25  # well-formed, labels by coin flip: about 1/8 right
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        make_task("nope")


def test_chain_task_labels_depend_on_earlier_decisions() -> None:
    task = ChainTask()
    assert task.num_digits == 4 > RuleTask().num_digits  # more decisions per response than rule
    assert task.score((3, 8, 5, 6), "sum : 3 odd , 8 odd , 5 even , 6 even") == 1.0
    # The same digit in the same place needs the other label when an earlier digit changes: the right
    # value of a decision depends on the decisions before it (the running sum), not on its digit.
    assert task.right_labels((3, 8, 5, 6))[1:] == ["odd", "even", "even"]
    assert task.right_labels((4, 8, 5, 6))[1:] == ["even", "odd", "odd"]
    # An early wrong step dooms the rest: carrying a wrong first label forward with the right local rule
    # (flip on an odd digit) gets every later label wrong too.
    problem = (3, 8, 5, 6)
    carried = ["even"]
    for d in problem[1:]:
        carried.append(carried[-1] if d % 2 == 0 else {"odd": "even", "even": "odd"}[carried[-1]])
    right = task.right_labels(problem)
    assert all(c != r for c, r in zip(carried, right, strict=True))
    for wrong in ("sum : 3 odd , 8 even , 5 odd , 6 odd", "sum : 3 odd , 8 odd , 5 even", "sum : 3 odd and 8 odd"):
        assert task.score(problem, wrong) == 0.0, wrong
    gen = torch.Generator().manual_seed(0)
    problems = task.sample_prompts(800, gen)
    scores = [task.score(p, task.format_example(p, gen)) for p in problems]
    assert 0.03 < sum(scores) / len(scores) < 0.1  # well-formed, labels by coin flip: about 1/16 right
    assert make_task("chain").name == "chain" and DemoConfig(task="chain").response_width(task) == 21


# ----- arms, protocol, refusals ------------------------------------------------------------------


def test_parse_arms_puts_the_baseline_first() -> None:
    keys = [a.key for a in parse_arms("tempo+tree, rloo+independent,tempo+tree")]
    assert keys == ["grpo+independent", "tempo+tree", "rloo+independent"]
    with pytest.raises(ValueError, match="estimator\\+rollout"):
        parse_arms("tempo")
    with pytest.raises(ValueError, match="estimator\\+rollout"):
        parse_arms("tempo+beam")


def test_protocols_v2_selection_and_evaluation_seeds() -> None:
    for proto in PROTOCOLS.values():
        proto.check()
        assert not set(proto.eval_seeds) & set(proto.selection_seeds)
        assert len(proto.lr_grid) >= 4 and len(proto.selection_seeds) >= 4
        sets = proto.eval_sets()  # at least 20 evaluation seeds: two disjoint sets of 10, and pooled
        assert len(proto.eval_seeds) >= 20 and list(sets)[-1] == "pooled"
        halves = [set(v) for k, v in sets.items() if k != "pooled"]
        assert len(halves) >= 2 and all(len(h) == 10 for h in halves) and not halves[0] & halves[1]
    # rule: each arm's v1 pick (5e-4, 1e-3) and their neighbours
    assert {5e-4, 1e-3, 1.5e-3} <= set(PROTOCOLS["rule"].lr_grid) and min(PROTOCOLS["rule"].lr_grid) < 5e-4
    assert set(replace(PROTOCOLS["rule"], eval_seeds=tuple(range(40, 50))).eval_sets()) == {"40-49"}


def test_parse_seeds_and_fixed_lrs() -> None:
    assert parse_seeds("40-49", "--eval-seeds") == tuple(range(40, 50)) and parse_seeds("7", "--x") == (7,)
    for bad in ("9-3", "a-b", "-1", "", "4-"):
        with pytest.raises(ValueError, match=r"--eval-seeds: .* is not a seed range A-B"):
            parse_seeds(bad, "--eval-seeds")
    arms = parse_arms("tempo+independent")
    fixed = parse_lrs("grpo+independent=5e-4, tempo+independent=1e-3", arms)
    assert fixed == {Arm("grpo", "independent"): 5e-4, Arm("tempo", "independent"): 1e-3}
    for bad, needle in (
        ("tempo+tree=1e-3", "'tempo\\+tree' is not an arm of this study"),
        ("tempo+independent=abc", "not a positive learning rate"),
        ("tempo+independent=-1e-3", "not a positive learning rate"),
        ("tempo+independent=nan", "not a positive learning rate"),
        ("tempo+independent", "is not ARM=VALUE"),
        ("tempo+independent=1e-3,tempo+independent=2e-3", "given twice"),
    ):
        with pytest.raises(ValueError, match=needle):
            parse_lrs(bad, arms)


def test_every_same_rollout_pair_is_evaluated_at_both_picks() -> None:
    arms = parse_arms("tempo+independent,grpo+tree,tempo+tree,rloo+independent")
    gi, ti, gt, tt, ri = arms
    picks = {gi: 1e-3, ti: 5e-4, gt: 5e-4, tt: 5e-4, ri: 3e-4}
    lrs = evaluation_lrs(arms, picks)
    assert lrs[gi] == (3e-4, 5e-4, 1e-3)  # its own pick, and the picks of tempo and rloo on its rollouts
    assert lrs[ti] == (5e-4, 1e-3) and lrs[ri] == (3e-4, 1e-3)
    assert lrs[gt] == (5e-4,) and lrs[tt] == (5e-4,)  # picks agree: one lr each


def _summary(seeds: list[int], steps: list[int | None], budget: int = 100) -> dict:
    return {
        "seeds": seeds,
        "steps_to_target": steps,
        "generated_tokens_to_target": [None if s is None else 10 * s for s in steps],
        "budget_steps": [budget] * len(seeds),
        "budget_tokens": [10 * budget] * len(seeds),
    }


def test_comparisons_on_each_seed_set_and_pooled() -> None:
    arms = parse_arms("tempo+independent,grpo+tree,tempo+tree")
    gi, ti, gt, tt = arms
    picks = {gi: 1e-3, ti: 5e-4, gt: 5e-4, tt: 5e-4}
    seeds = [0, 1, 2, 3]
    sets = {"0-1": (0, 1), "2-3": (2, 3), "pooled": (0, 1, 2, 3)}
    evaluated = {
        "grpo+independent": {"0.0005": _summary(seeds, [40, 40, 60, 60]), "0.001": _summary(seeds, [20, 20, None, 60])},
        "tempo+independent": {"0.0005": _summary(seeds, [20, 20, 60, 60]), "0.001": _summary(seeds, [40, 40, 30, 30])},
        "grpo+tree": {"0.0005": _summary(seeds, [50, 50, 50, 50])},
        "tempo+tree": {"0.0005": _summary(seeds, [25, 25, 50, 50])},
    }
    out = comparisons(arms, picks, evaluated, sets)
    kinds = [(c["kind"], c["reference"], c["reference_lr"], c["arm"], c["lr"]) for c in out]
    assert kinds == [
        ("vs_baseline", "grpo+independent", 1e-3, "tempo+independent", 5e-4),
        ("vs_baseline", "grpo+independent", 1e-3, "grpo+tree", 5e-4),
        ("vs_baseline", "grpo+independent", 1e-3, "tempo+tree", 5e-4),
        ("same_rollout", "grpo+independent", 1e-3, "tempo+independent", 5e-4),
        ("same_rollout_shared_lr", "grpo+independent", 5e-4, "tempo+independent", 5e-4),
        ("same_rollout_shared_lr", "grpo+independent", 1e-3, "tempo+independent", 1e-3),
        ("same_rollout", "grpo+tree", 5e-4, "tempo+tree", 5e-4),  # picks agree: no shared-lr rows
        ("tree_vs_independent", "grpo+independent", 1e-3, "grpo+tree", 5e-4),
        ("tree_vs_independent", "tempo+independent", 5e-4, "tempo+tree", 5e-4),
    ]
    best = out[3]  # grpo at 1e-3 (a censored seed counts at its budget, 100) against tempo at 5e-4
    assert best["0-1"]["steps"]["ratio"] == pytest.approx(40 / 40)
    assert best["2-3"]["steps"]["ratio"] == pytest.approx(160 / 120) and best["2-3"]["censored"] == [1, 0]
    assert best["pooled"]["steps"]["ratio"] == pytest.approx(200 / 160)
    shared = out[4]  # both at 5e-4: the seed set decides the sign
    assert shared["0-1"]["steps"]["ratio"] == pytest.approx(2.0) and shared["2-3"]["steps"]["ratio"] == 1.0
    assert out[8]["pooled"]["tokens"]["ratio"] == pytest.approx(1600 / 1500)
    # The decision rule: TEMPO on independent rollouts fails it (best against best is 1.00x on 0-1, and
    # the shared lrs do not help); a clear win on every set and at every shared lr passes it.
    found = verdicts(out, sets)
    assert set(found) == {"tempo+independent", "tempo+tree"} and not found["tempo+independent"]["established"]
    assert any("seeds 0-1" in why for why in found["tempo+independent"]["failed"])
    assert any("both at lr 0.0005, seeds pooled" in why for why in found["tempo+independent"]["failed"])
    fast = {k: {lr: _summary(seeds, [20, 21, 22, 23]) for lr in v} for k, v in evaluated.items()}
    fast["grpo+independent"] = {lr: _summary(seeds, [60, 61, 62, 63]) for lr in evaluated["grpo+independent"]}
    fast["grpo+tree"] = {lr: _summary(seeds, [60, 61, 62, 63]) for lr in evaluated["grpo+tree"]}
    won = verdicts(comparisons(arms, picks, fast, sets), sets)
    assert won == {
        "tempo+independent": {"established": True, "failed": []},
        "tempo+tree": {"established": True, "failed": []},
    }


def test_tree_page_step_is_where_rewards_vary() -> None:
    assert tree_step([0.1, 0.2, 0.45, 0.6, 0.9]) == 3
    assert tree_step([0.0, 0.75, 0.25, 1.0]) == 2  # ties: the earliest
    assert tree_step([0.0, 0.0, 0.0, 1.0, 1.0]) == 2  # no batch with mixed rewards: the middle step


def test_cpu_model_and_flags_from_cpuinfo() -> None:
    text = "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n\nprocessor\t: 1\n"
    model, flags = cpu_model_and_flags(text)
    assert model == "Some CPU 9000" and flags["avx2"] and flags["avx512f"] and not flags["amx_tile"]
    assert cpu_model_and_flags("model name : X\nflags : sse4_2 avx avx2\n")[1]["avx512f"] is False


def test_unknown_rollout_is_refused_by_name() -> None:
    DemoConfig(rollout="tree").check()
    with pytest.raises(ValueError, match=r"rollout must be one of \['independent', 'tree'\], got 'beam'"):
        DemoConfig(rollout="beam").check()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--arms", "tempo+beam"], "rollout 'independent' or 'tree'"),
        (["--arms", "nope+independent"], "unknown estimator 'nope'"),
        (["--arms", "tempo"], "--arms"),
        (["--task", "nope"], "unknown task 'nope'"),
        (["--eval-seeds", "9-3"], "--eval-seeds: '9-3' is not a seed range"),
        (["--selection-seeds", "x"], "--selection-seeds: 'x' is not a seed range"),
        (["--eval-seeds", "100-109", "--selection-seeds", "105-108"], "overlap (seed 105)"),
        (["--lr", "nope+tree=1e-3"], "--lr: 'nope+tree' is not an arm of this study"),
        (["--lr", "grpo+independent=fast"], "not a positive learning rate"),
    ],
)
def test_study_command_errors_are_one_line_before_training(tmp_path, args, needle) -> None:
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--quick", *args])
    assert result.exit_code == 2
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("tempo-verl study: error:")
    assert list(tmp_path.iterdir()) == []


def test_a_study_never_writes_into_a_folder_of_the_users(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--quick", "--task", "rule", "--jobs", "1"])
    assert result.exit_code == 2 and "no tempo-verl run wrote" in result.output and "warm-up" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ----- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path) -> None:
    torch.set_num_threads(1)
    arms = "grpo+independent,tempo+independent"
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--quick", "--arms", arms, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    pages = [f"trees-rule-{a}.html" for a in ("grpo+independent", "tempo+independent")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MARKER, "runs.json", "study.json", "study.png", "study.txt", *pages]
    )
    html = (tmp_path / "trees-rule-tempo+independent.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "find " in html and "step 1 (batch reward" in html
    study = json.loads((tmp_path / "study.json").read_text())
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert list(PROTOCOLS) == ["rule"]  # protocol v2 has one task: its entry is study.json's top level
    assert study["quick"] is True and study["task"] == "rule"
    n_eval, steps = len(QUICK["eval_seeds"]), QUICK["steps"]
    entry = study
    assert entry["lr_grid"] == list(QUICK["lr_grid"])
    assert entry["seeds"] == {"selection": list(QUICK["selection_seeds"]), "evaluation": list(QUICK["eval_seeds"])}
    assert set(entry["arms"]) == {"grpo+independent", "tempo+independent"}
    assert set(entry["selection"]["tempo+independent"]) == {f"{lr:g}" for lr in QUICK["lr_grid"]}
    for key, arm in entry["arms"].items():
        assert arm["lr"] in QUICK["lr_grid"]
        assert arm["lr"] == max(QUICK["lr_grid"], key=lambda lr, k=key: entry["selection"][k][f"{lr:g}"])
        for field in ("steps_to_target", "generated_tokens_to_target", "final_reward"):
            assert len(arm[field]) == n_eval
        assert all(s is None or 1 <= s <= steps for s in arm["steps_to_target"])
        assert [s is None for s in arm["steps_to_target"]] == [t is None for t in arm["generated_tokens_to_target"]]
        assert arm["censored"] == sum(s is None for s in arm["steps_to_target"])
        # Paired seeds: every arm's evaluation runs use exactly the protocol's evaluation seeds.
        evaluated = [r for r in runs if r["arm"] == key and r["phase"] == "evaluation" and r["lr"] == arm["lr"]]
        assert [r["seed"] for r in evaluated] == list(QUICK["eval_seeds"])
        assert all(len(r["reward"]) == steps for r in evaluated)
        assert all(t > 0 for r in evaluated for t in r["generated_tokens"])
    for c in entry["comparisons"]:
        for metric in ("steps", "tokens"):
            r = c["0-1"][metric]
            assert set(r) == {"ratio", "low", "high"} and r["low"] <= r["ratio"] <= r["high"]
    selection = 2 * len(QUICK["lr_grid"]) * len(QUICK["selection_seeds"])
    evaluation = sum(len(v) for v in entry["evaluated"].values()) * n_eval
    assert len(runs) == selection + evaluation + 2  # + one tree-page rerun per arm
    assert all(r["phase"] != "tree" or len(r["reward"]) <= steps for r in runs)
    assert (tmp_path / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "study.txt").read_text()
    assert "tempo+independent" in text and "task rule" in text


@pytest.mark.slow
def test_quick_says_it_is_not_a_result_and_the_study_names_its_machine(tmp_path) -> None:
    torch.set_num_threads(1)
    args = ["study", "--out", str(tmp_path), "--quick", "--task", "rule", "--arms", "tempo+tree", "--jobs", "1"]
    args += ["--lr", "grpo+independent=3e-3", "--eval-seeds", "5-6", "--selection-seeds", "7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # --quick is not a result: on the console (first, and with the table), in study.txt, study.json and the figure.
    assert result.output.startswith(NOT_A_RESULT) and result.output.count(NOT_A_RESULT) == 2
    assert (tmp_path / "study.txt").read_text().startswith(NOT_A_RESULT)
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["not_a_result"] == NOT_A_RESULT
    assert NOT_A_RESULT in Image.open(tmp_path / "study.png").info["Title"]
    # The machine: torch, the CPU and its flags, threads, python, the code's commit.
    machine = study["machine"]
    assert machine["torch"] == torch.__version__ and machine["python"] == sys.version.split()[0]
    assert {"avx2", "avx512f"} <= set(machine["cpu_flags"]) and machine["torch_threads"] == 1 and machine["jobs"] == 1
    assert 1 <= machine["cpus_usable"] <= machine["cpus"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert machine["git_commit"] == head and isinstance(machine["git_dirty"], bool)
    # --eval-seeds, --selection-seeds, --lr: the fixed arm is never selected, and is evaluated at both picks.
    assert study["task"] == "rule" and "tasks" not in study
    assert study["seeds"] == {"selection": [7], "evaluation": [5, 6]}
    assert study["lr_fixed"] == {"grpo+independent": 3e-3} and set(study["selection"]) == {"tempo+tree"}
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert {(r["arm"], r["seed"]) for r in runs if r["phase"] == "selection"} == {("tempo+tree", 7)}
    assert all(r["seed"] in (5, 6) for r in runs if r["phase"] != "selection")
    assert study["arms"]["grpo+independent"]["lr"] == 3e-3
    # A tree rollout generates fewer tokens per step than independent sampling (same prompts, same steps).
    per_step = {
        arm: np.mean([t for r in runs if r["arm"] == arm and r["phase"] == "evaluation" for t in r["generated_tokens"]])
        for arm in study["arms"]
    }
    assert per_step["tempo+tree"] < per_step["grpo+independent"]


@pytest.mark.slow
def test_a_run_in_a_worker_process_is_the_run_trained_here() -> None:
    proto = replace(PROTOCOLS["rule"], **QUICK)
    arm = Arm("tempo", "independent")
    ready = prepare(proto.config(arm, proto.lr_grid[0]))
    job = Job(proto, arm, proto.lr_grid[0], QUICK["eval_seeds"][-1], "evaluation", ready.warm_state)
    here, _ = train_job(job)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there, _ = pool.submit(train_job, job).result()
    assert here["reward"] == there["reward"] and here["generated_tokens"] == there["generated_tokens"]
    assert len(here["reward"]) == proto.steps
