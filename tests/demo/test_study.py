"""`tempo-verl study`: the statistics on known inputs, censoring, the premise task's checker, and the
command end to end on the --quick protocol (schema, paired seeds, whole-or-nothing outputs)."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.loop import prepare
from tempo_verl.demo.stats import censored_costs, paired_ratio, selection_score, time_to_target
from tempo_verl.demo.study import PROTOCOLS, QUICK, Arm, Job, parse_arms, train_job
from tempo_verl.demo.task import RuleTask, make_task
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


# ----- arms, protocol, refusals ------------------------------------------------------------------


def test_parse_arms_puts_the_baseline_first() -> None:
    keys = [a.key for a in parse_arms("tempo+tree, rloo+independent,tempo+tree")]
    assert keys == ["grpo+independent", "tempo+tree", "rloo+independent"]
    with pytest.raises(ValueError, match="estimator\\+rollout"):
        parse_arms("tempo")
    with pytest.raises(ValueError, match="estimator\\+rollout"):
        parse_arms("tempo+beam")


def test_protocols_keep_selection_and_evaluation_seeds_apart() -> None:
    for proto in PROTOCOLS.values():
        proto.check()
        assert len(proto.eval_seeds) >= 10
        assert not set(proto.eval_seeds) & set(proto.selection_seeds)


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
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--quick", "--task", "parity", "--jobs", "1"])
    assert result.exit_code == 2 and "no tempo-verl run wrote" in result.output and "warm-up" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ----- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path) -> None:
    torch.set_num_threads(1)
    arms = "grpo+independent,tempo+independent"
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--quick", "--arms", arms, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    pages = [f"trees-{t}-{a}.html" for t in PROTOCOLS for a in ("grpo+independent", "tempo+independent")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MARKER, "runs.json", "study.json", "study.png", "study.txt", *pages]
    )
    html = (tmp_path / "trees-rule-tempo+independent.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "find " in html and "step 1" in html
    study = json.loads((tmp_path / "study.json").read_text())
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert study["quick"] is True and set(study["tasks"]) == set(PROTOCOLS)
    n_eval, steps = len(QUICK["eval_seeds"]), QUICK["steps"]
    for name, entry in study["tasks"].items():
        assert entry["task"] == name
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
            for metric in ("steps", "tokens"):
                r = arm["vs_baseline"][metric]
                assert set(r) == {"ratio", "low", "high"} and r["low"] <= r["ratio"] <= r["high"]
            # Paired seeds: every arm's evaluation runs use exactly the protocol's evaluation seeds.
            evaluated = [r for r in runs if r["task"] == name and r["arm"] == key and r["phase"] == "evaluation"]
            assert [r["seed"] for r in evaluated] == list(QUICK["eval_seeds"])
            assert all(r["lr"] == arm["lr"] and len(r["reward"]) == steps for r in evaluated)
            assert all(t > 0 for r in evaluated for t in r["generated_tokens"])
        assert entry["arms"]["grpo+independent"]["vs_baseline"]["steps"]["ratio"] == 1.0
    per_arm = len(QUICK["lr_grid"]) * len(QUICK["selection_seeds"]) + n_eval
    assert len(runs) == len(PROTOCOLS) * 2 * per_arm
    assert (tmp_path / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "study.txt").read_text()
    assert "tempo+independent" in text and "task parity" in text


@pytest.mark.slow
def test_one_task_study_json_holds_the_task_at_the_top(tmp_path) -> None:
    torch.set_num_threads(1)
    args = ["study", "--out", str(tmp_path), "--quick", "--task", "rule", "--arms", "tempo+tree", "--jobs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["task"] == "rule" and study["lr_grid"] == list(QUICK["lr_grid"]) and "tasks" not in study
    assert set(study["arms"]) == {"grpo+independent", "tempo+tree"}
    tree = study["arms"]["tempo+tree"]
    assert set(tree) >= {"lr", "steps_to_target", "generated_tokens_to_target", "vs_baseline"}
    # A tree rollout generates fewer tokens per step than independent sampling (same prompts, same steps).
    runs = json.loads((tmp_path / "runs.json").read_text())
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
