"""`tempo-verl demo`: the task's checker, a short end-to-end run, td_coef=0 == GRPO, the command's errors."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from typer.testing import CliRunner

from tempo_verl.cli import app
from tempo_verl.demo.config import DemoConfig
from tempo_verl.demo.loop import run_demo, train
from tempo_verl.demo.model import ModelSize, build_model, build_tokenizer, sample_groups, warm_up
from tempo_verl.demo.report import steps_to_target, write_outputs
from tempo_verl.demo.task import ParityTask
from tempo_verl.outputs import MARKER

#: summary.json's fields, in order, as docs/demo.md's "Outputs" table lists them.
SUMMARY_FIELDS = [
    "task",
    "rollout",
    "target",
    "target_window",
    "steps",
    "lr",
    "lr_note",
    "median_steps_to_target",
    "grpo_over_tempo_median_steps",
    "estimators",
]
TINY = ModelSize(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)


def tiny_config(**overrides) -> DemoConfig:
    """A few-second demo: small batches, a short warm-up, one seed."""
    settings = {
        "seeds": 1,
        "steps": 3,
        "prompts_per_step": 8,
        "group_size": 6,
        "warmup_steps": 120,
        "warmup_batch": 32,
        "model": TINY,
        "tree_step": 2,
        "lr": 3e-3,
    }
    settings.update(overrides)
    return DemoConfig(**settings)


@pytest.fixture(scope="module")
def warm():
    """A warmed-up tiny policy shared by the loop tests: (cfg, task, tokenizer, state)."""
    torch.set_num_threads(1)
    cfg = tiny_config()
    task = cfg.make_task()
    tokenizer = build_tokenizer(task)
    model = build_model(tokenizer, cfg.model, seed=cfg.warmup_seed)
    losses = warm_up(model, tokenizer, task, cfg.warmup_steps, cfg.warmup_batch, cfg.warmup_lr, 7, torch.device("cpu"))
    assert losses[-1] < 0.5 * losses[0]  # the format warm-up actually learns
    return cfg, task, tokenizer, {k: v.clone() for k, v in model.state_dict().items()}


# ----- the task's checker ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    ["3 odd , 8 even , 5 odd", "3 odd and 8 even and 5 odd", "3 odd , 8 even and 5 odd", "  3 odd , 8 even , 5 odd "],
)
def test_checker_accepts_right_responses(response: str) -> None:
    assert ParityTask(3).score((3, 8, 5), response) == 1.0


@pytest.mark.parametrize(
    "response",
    [
        "3 odd , 8 odd , 5 odd",  # one wrong label
        "3 even , 8 odd , 5 even",  # all labels wrong
        "3 odd , 8 even , 5 even",  # the last label wrong
        "3 odd , 9 even , 5 odd",  # a wrong digit echoed
        "3 odd 8 even , 5 odd",  # a missing separator
        "3 odd , 8 even ; 5 odd",  # an unknown separator
        "3 odd , 8 even",  # a missing item
        "3 odd , 8 even , 5 odd , 7 odd",  # an extra item
        "3 odd , 8 even , 5 odd odd",  # an extra word
        "3 odd , 8 <pad> even , 5 odd",  # a stray special token inside
        "5 odd , 8 even , 3 odd",  # digits out of order
        "",
    ],
)
def test_checker_rejects_wrong_responses(response: str) -> None:
    assert ParityTask(3).score((3, 8, 5), response) == 0.0


def test_warm_up_data_has_the_format_but_random_labels() -> None:
    task = ParityTask(3)
    gen = torch.Generator().manual_seed(0)
    examples = [task.format_example((1, 2, 3), gen) for _ in range(200)]
    scores = [task.score((1, 2, 3), e) for e in examples]
    # Well-formed (the checker parses each one), labels are coin flips: about 1/8 right.
    assert all(len(e.split()) == task.max_response_words for e in examples)
    assert 0.05 < sum(scores) / len(scores) < 0.25
    assert {e.split()[2] for e in examples} == {",", "and"}


def test_steps_to_target_uses_the_trailing_window() -> None:
    assert steps_to_target([0.1, 0.9, 0.1, 0.9, 0.9, 0.9], 0.8, window=3) == 6  # steps 4..6
    assert steps_to_target([0.1, 0.9, 0.9, 0.9], 0.8, window=1) == 2
    assert steps_to_target([0.9, 0.9], 0.8, window=3) == 1  # the first steps average what there is
    assert steps_to_target([0.1, 0.7, 0.79], 0.8, window=1) is None


def test_sampling_is_reproducible_and_stops_at_eos(warm) -> None:
    cfg, task, tokenizer, state = warm
    model = build_model(tokenizer, cfg.model, seed=0)
    model.load_state_dict(state)
    texts = [task.prompt_text((1, 2, 3)), task.prompt_text((4, 5, 6))]

    def sample(seed: int, roots: int = 8):
        return sample_groups(model, tokenizer, texts, 8, 12, torch.Generator().manual_seed(seed), roots)

    a, la, ma = sample(5)
    b, lb, mb = sample(5)
    c, _, _ = sample(6)
    ga, gb = ma["rollout_tree/generated_tokens"], mb["rollout_tree/generated_tokens"]
    assert torch.equal(a, b) and torch.equal(la, lb) and ga == gb == int(la.sum())  # independent: all generated
    assert ma["rollout_tree/saved_token_frac"] == 0.0 and ma["rollout_tree/branches_per_group"] == 0.0
    assert not torch.equal(a, c)
    for row, n in zip(a.tolist(), la.tolist(), strict=True):
        if tokenizer.eos_token_id in row:
            assert row.index(tokenizer.eos_token_id) == n - 1
            assert all(t == 0 for t in row[n:])  # padded after <eos>
    _, lt, mt = sample(5, roots=2)  # a tree: the branches' prefixes are not generated again
    assert mt["rollout_tree/generated_tokens"] < int(lt.sum()) == mt["rollout_tree/response_tokens"]
    assert mt["rollout_tree/saved_token_frac"] > 0.0 and mt["rollout_tree/branches_per_group"] > 0.0


# ----- the loop ---------------------------------------------------------------------------------


def test_short_run_writes_the_outputs_and_trains(tmp_path, monkeypatch) -> None:
    calls: list[float] = []
    real_score = ParityTask.score

    def spy(self, digits, response):
        value = real_score(self, digits, response)
        calls.append(value)
        return value

    monkeypatch.setattr(ParityTask, "score", spy)
    cfg = tiny_config(out=tmp_path)
    result = run_demo(cfg)
    report = write_outputs(result, tmp_path)

    # The reward is the checker's: one call per response, and each step's reward is their mean.
    per_step = cfg.prompts_per_step * cfg.group_size
    assert len(calls) == cfg.steps * per_step * len(cfg.estimators)
    first = result.runs[0]
    assert first.rewards[0] == pytest.approx(sum(calls[:per_step]) / per_step)
    assert any(r > 0 for run in result.runs for r in run.rewards)

    # The loss moves the policy, in every run.
    for run in result.runs:
        moved = max((run.final_state[k] - result.warm_state[k]).abs().max().item() for k in result.warm_state)
        assert moved > 1e-4, run.estimator
        assert all("tempo/branch_token_frac" in log for log in run.step_logs)

    # summary.json: exactly the documented schema (docs/demo.md, "Outputs").
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == SUMMARY_FIELDS
    assert summary["target"] == cfg.target and summary["steps"] == cfg.steps and summary["lr"] == cfg.lr
    assert summary["task"] == "parity" and summary["rollout"] == "independent" and summary["target_window"] == 3
    assert "one learning rate shared by every estimator" in summary["lr_note"] and "study" in summary["lr_note"]
    medians = summary["median_steps_to_target"]
    assert set(medians) == {"tempo", "grpo"}
    if None in medians.values():
        assert summary["grpo_over_tempo_median_steps"] is None
    else:
        assert summary["grpo_over_tempo_median_steps"] == pytest.approx(medians["grpo"] / medians["tempo"])
    assert set(summary["estimators"]) == {"tempo", "grpo"}
    for est in summary["estimators"].values():
        assert set(est) == {
            "seeds",
            "steps_to_target",
            "final_reward",
            "reward_curve",
            "generated_tokens_per_step",
            "generated_tokens_to_target",
        }
        assert len(est["generated_tokens_per_step"]) == 1 and est["generated_tokens_per_step"][0] > 0
        assert est["seeds"] == [0]
        assert all(s is None or (isinstance(s, int) and 1 <= s <= cfg.steps) for s in est["steps_to_target"])
        assert len(est["reward_curve"]) == 1 and len(est["reward_curve"][0]) == cfg.steps
        assert est["final_reward"] == [est["reward_curve"][0][-1]]
        assert all(0.0 <= r <= 1.0 for r in est["reward_curve"][0])
    assert summary == report.summary

    # curves.png is a real PNG; the tree page draws the kept step's groups; metrics have tempo/*.
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 300 and height > 200
    html = (tmp_path / "tree.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "step 2" in html
    assert "parity " in html  # the prompts are shown
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == cfg.steps * 2
    assert all("tempo/branch_token_frac" in x and "step_time_s" in x for x in lines)
    assert all(x["rollout_tree/generated_tokens"] == x["generated_tokens"] for x in lines)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert 0.0 < timing["estimators"]["tempo"]["estimator_share"] < 1.0


def test_td_coef_zero_gives_grpo_updates(warm) -> None:
    _, task, tokenizer, state = warm
    runs = {
        name: train(name, 3, tiny_config(td_coef=td), state, tokenizer, task)
        for name, td in (("grpo", 1.0), ("tempo", 0.0))
    }
    tempo1 = train("tempo", 3, tiny_config(td_coef=1.0), state, tokenizer, task)
    grpo, tempo0 = runs["grpo"], runs["tempo"]
    assert 0 < sum(grpo.rewards) < len(grpo.rewards)  # some right, some wrong: the TD term can matter

    def gap(a, b) -> float:
        return max((a.final_state[k] - b.final_state[k]).abs().max().item() for k in state)

    # Same samples, same losses, same weights, bit for bit: TEMPO's GRPO part is computed as verl's is.
    assert tempo0.rewards == grpo.rewards
    for a, b in zip(tempo0.step_logs, grpo.step_logs, strict=True):
        assert a["loss"] == b["loss"]
    assert gap(tempo0, grpo) == 0.0
    # ... whereas the TD term (td_coef = 1) changes the updates.
    assert gap(tempo1, grpo) > 1e-3


# ----- the command --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--estimators", "tempo,nope"], "unknown estimator 'nope'"),
        (["--estimators", "grpo,gae"], "estimator 'gae' cannot run in this loop"),
        (["--estimators", ","], "--estimators"),
        (["--seeds", "0"], "seeds must be at least 1"),
        (["--device", "tpu"], "device must be 'cpu' or 'cuda'"),
    ],
)
def test_demo_command_errors_are_one_line(tmp_path, args, needle) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("tempo-verl demo: error:")
    assert "Traceback" not in result.output
    assert not (tmp_path / "summary.json").exists()


def test_demo_command_unwritable_out(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["demo", "--out", str(blocker / "sub"), "--steps", "1", "--seeds", "1"])
    assert result.exit_code == 2 and "cannot write there" in result.output
    assert len([x for x in result.output.splitlines() if x.strip()]) == 1


def test_demo_command_never_replaces_a_folder_of_the_users(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--steps", "1", "--seeds", "1"])
    assert result.exit_code == 2 and "no tempo-verl run wrote" in result.output and "warm-up" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_interrupted_demo_leaves_the_previous_outputs_whole(tmp_path, monkeypatch) -> None:
    from tempo_verl.demo import command, report

    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "summary.json").write_text('{"previous": true}')

    def write_then_die(result, stage):
        (stage / "summary.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_outputs", write_then_die)
    monkeypatch.setattr("tempo_verl.demo.loop.run_demo", lambda cfg, on_step=None: None)
    with pytest.raises(KeyboardInterrupt):
        command.demo_command(str(out), 1, 1, "grpo", "cpu")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "summary.json"]
    assert (out / "summary.json").read_text() == '{"previous": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no half-written folder


def test_demo_command_cuda_without_gpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output and "Traceback" not in result.output


# ----- what the command says, and what `tempo-verl tree` makes of its outputs -------------------


@pytest.fixture(scope="module")
def demo_cli_run(tmp_path_factory):
    """`tempo-verl demo` through the CLI, at the tiny sizes: (the output folder, the command's output)."""
    import functools

    from tempo_verl.demo import config

    out = tmp_path_factory.mktemp("cli") / "demo"
    tiny = functools.partial(DemoConfig, **{k: v for k, v in vars(tiny_config()).items() if k not in _CLI_SET})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "DemoConfig", tiny)  # the command builds its settings from this name
        result = CliRunner().invoke(app, ["demo", "--out", str(out), "--seeds", "1", "--steps", "3"])
    assert result.exit_code == 0, result.output
    return out, result.output


#: What the command sets from its options and the task (the tiny sizes leave them alone).
_CLI_SET = {"out", "seeds", "steps", "estimators", "device", "rollout", "task", "lr", "target"}


def test_demo_says_it_is_one_shared_lr_and_where_to_look(demo_cli_run) -> None:
    out, output = demo_cli_run
    assert "learning rate 0.0003: one learning rate shared by every estimator" in output
    assert "`tempo-verl study` gives each arm its own best learning rate" in output
    assert "parity task" in output
    for name in ("summary.json", "curves.png", "tree.html", "metrics.jsonl", "timing.json", "trees/", "tokenizer/"):
        assert f"{(out / name.rstrip('/')).resolve()}{'/' if name.endswith('/') else ''}" in output, name
    assert f"next: open {(out / 'tree.html').resolve()} in a browser" in output
    assert f"tempo-verl tree {out} --out trees.html" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lr"] == 3e-4 and summary["task"] == "parity" and summary["steps"] == 3


def test_tree_command_draws_the_demo_dump_offline(demo_cli_run, tmp_path, monkeypatch) -> None:
    """The command the demo prints, run as printed: no network, the words of the task on the page."""
    from tempo_verl.trees.readers import load_tree_input

    out, _ = demo_cli_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    records = load_tree_input(out / "trees")  # a valid tempo-tree/1 dump
    assert records and all(r["step"] == 2 and r["prompt"].startswith("parity ") for r in records)
    demo_uids = [s.split('"')[0] for s in (out / "tree.html").read_text().split('data-uid="')[1:]]
    # As printed (the output folder: its trees/ and tokenizer/), and spelt out.
    for k, argv in enumerate(
        [[str(out)], [str(out / "trees"), "--tokenizer", str(out / "tokenizer")]],
    ):
        page = tmp_path / f"x{k}.html"
        result = CliRunner().invoke(app, ["tree", *argv, "--out", str(page)])
        assert result.exit_code == 0, result.output
        assert f"wrote {page}: {min(8, len(records))} of {len(records)} groups" in result.output
        html = page.read_text()
        assert html.count('<section class="group"') == min(8, len(records))
        assert " odd" in html or " even" in html  # decoded by the demo's tokenizer, not token ids
        assert [s.split('"')[0] for s in html.split('data-uid="')[1:]] == demo_uids  # the demo page's groups


def test_demo_task_rule(tmp_path, monkeypatch) -> None:
    """`--task rule`: the study's premise task, at its own steps, lr and target."""
    from tempo_verl.demo import config
    from tempo_verl.demo.config import TASK_SETTINGS

    seen: list[DemoConfig] = []

    def tiny(**kwargs):
        cfg = DemoConfig(**{**{k: v for k, v in vars(tiny_config()).items() if k not in _CLI_SET}, **kwargs})
        seen.append(cfg)
        return cfg

    monkeypatch.setattr(config, "DemoConfig", tiny)
    args = ["demo", "--task", "rule", "--out", str(tmp_path / "o"), "--seeds", "1", "--steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen[0].task == "rule" and seen[0].lr == TASK_SETTINGS["rule"]["lr"] and seen[0].steps == 2
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["task"] == "rule" and summary["target"] == TASK_SETTINGS["rule"]["target"]
    assert "find " in (tmp_path / "o" / "tree.html").read_text()  # the rule task's prompts
    bad = CliRunner().invoke(app, ["demo", "--task", "nope", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--task: unknown task 'nope'; known tasks: parity, rule." in bad.output
