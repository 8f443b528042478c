"""The ``tempo_tree`` agent loop in-process: outputs, branch points, failures, registry, config, start-up check."""

from __future__ import annotations

import asyncio
import subprocess
import time
import types
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tempo_verl.rollout import config as tree_config
from tempo_verl.rollout.backend import TransformersServer
from tempo_verl.rollout.group import GroupFailed, active_groups
from tempo_verl.rollout.local import agent_loop_factory, rollout_groups
from tempo_verl.rollout.metrics import read_step_metrics, tree_rollout_metrics
from tempo_verl.rollout.plan import Parent, choose_branch_points

PARAMS = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "seed": 7}
PROMPTS = ["parity 1 2 3 :", "parity 4 5 6 :", "parity 7 8 9 :"]


def _run(policy, n=8, tree=None, prompts=PROMPTS, server=None, length=16):
    tokenizer, model = policy
    server = server or TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, length)

    async def go():
        make_loop = agent_loop_factory(server, tokenizer, n, 8, length, tree)
        return await rollout_groups(make_loop, prompts, [f"u{i}" for i in range(len(prompts))], n, PARAMS)

    return asyncio.run(go())


def _server(policy, length=16):
    tokenizer, model = policy
    return TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, length)


async def _through_verl_worker(policy, agent_name, validate, n=4, tree=None, prompts=PROMPTS[:1], run_agent_loop=None):
    """Sessions through verl's own ``AgentLoopWorker._run_agent_loop`` (its registry, its per-session loop
    object, its ``trajectory["validate"]``); only the worker's post-processing (padding for TransferQueue)
    is left out: the loop's ``AgentLoopOutput`` comes back."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils.dataset.rl_dataset import RLHFDataset

    rollout = {"n": n, "prompt_length": 8, "response_length": 16, "custom": {"tree": tree or {}}}

    async def keep_output(output, validate, **kwargs):
        return output

    worker = types.SimpleNamespace(
        config=OmegaConf.create({"actor_rollout_ref": {"rollout": rollout}, "data": {}}),
        llm_client=_server(policy),
        tokenizer=policy[0],
        processor=None,
        hf_model_type=None,
        dataset_cls=RLHFDataset,
        tools=[],
        _agent_loop_postprocess=keep_output,
    )
    run = run_agent_loop or AgentLoopWorker._run_agent_loop
    flat = await asyncio.gather(
        *(
            run(
                worker,
                dict(PARAMS),
                {"step": 1, "sample_index": i, "rollout_n": s, "validate": validate},
                agent_name=agent_name,
                raw_prompt=[{"role": "user", "content": text}],
                uid=f"w{i}",
                session_id=s,
            )
            for i, text in enumerate(prompts)
            for s in range(n)
        )
    )
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


@pytest.mark.parametrize("schedule", ["rounds", "eager", "segments"])
def test_groups_are_trees_of_full_on_policy_samples(policy, schedule) -> None:
    groups = _run(policy, tree={"roots": 2, "schedule": schedule, "segment_tokens": 4})
    assert not active_groups()  # no registry entry left behind
    for group in groups:
        assert len(group) == 8  # rollout.n responses, as verl expects
        stats = [o.extra_fields["tempo_tree"] for o in group]
        assert [s["branch"] for s in stats] == [0.0] * 2 + [1.0] * 6
        for out, s in zip(group, stats, strict=True):
            assert len(out.response_ids) <= 16 and out.response_mask == [1] * len(out.response_ids)
            assert len(out.response_logprobs) == len(out.response_ids)
            assert s["response_tokens"] == len(out.response_ids)
            if s["branch"] and not s["fallback"]:
                parent, t = group[int(s["parent"])], int(s["depth"])
                assert 1 <= t <= len(parent.response_ids) - 2  # never the first or last token
                assert out.response_ids[:t] == parent.response_ids[:t]  # the parent's prefix, its logprobs
                assert out.response_logprobs[:t] == parent.response_logprobs[:t]
                assert s["generated_tokens"] == len(out.response_ids) - t
                if schedule != "rounds":  # its own parent, fixed from the start: the roots in turn
                    assert int(s["parent"]) == [0, 1][[2, 3, 4, 5, 6, 7].index(group.index(out)) % 2]
        branched = [tuple(o.response_ids[: int(s["depth"])]) for o, s in zip(group, stats, strict=True) if s["depth"]]
        assert len(set(branched)) == len(branched) >= 3  # never the same point twice
    stats = [o.extra_fields["tempo_tree"] for g in groups for o in g]
    metrics = tree_rollout_metrics(stats, [u for u in "abc" for _ in range(8)])
    generated = sum(s["generated_tokens"] for s in stats)
    assert metrics["rollout_tree/saved_token_frac"] == pytest.approx(
        1 - generated / sum(s["response_tokens"] for s in stats)
    )
    assert 0 < metrics["rollout_tree/saved_token_frac"] < 1
    assert metrics["rollout_tree/branches_per_group"] == sum(s["branch"] - s["fallback"] for s in stats) / 3


class _Counting(TransformersServer):
    """The backend, recording each request's input length and budget."""

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.log.append((len(prompt_ids), sampling_params.get("max_tokens"), sampling_params.get("seed")))
        return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)


def test_segmented_roots_decode_in_segments_and_branch_inside_them(policy) -> None:
    tokenizer, model = policy
    server = _Counting(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
    server.log = []
    groups = _run(policy, n=4, tree={"roots": 1, "schedule": "segments", "segment_tokens": 3}, server=server)
    root_requests = [r for r in server.log if r[1] is not None and r[1] <= 3]
    assert len(root_requests) > len(PROMPTS)  # some root needed more than one segment
    assert len({r[2] for r in root_requests}) == len(root_requests)  # each segment its own seed
    for group in groups:
        root = group[0]
        stats = root.extra_fields["tempo_tree"]
        assert stats["response_tokens"] == stats["generated_tokens"] == len(root.response_ids) <= 16
        assert len(root.response_logprobs) == len(root.response_ids)
        assert tokenizer.eos_token_id not in root.response_ids[:-1]  # no segment continued past the end
        for out in group[1:]:
            s = out.extra_fields["tempo_tree"]
            if not s["fallback"]:
                t = int(s["depth"])
                assert out.response_ids[:t] == root.response_ids[:t]
                assert out.response_logprobs[:t] == root.response_logprobs[:t]
    assert not active_groups()


def test_a_whole_root_keeps_the_servers_budget_and_a_branch_gets_the_rest(policy) -> None:
    tokenizer, model = policy
    server = _Counting(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
    server.log = []
    groups = _run(policy, n=2, tree={"roots": 1}, server=server)
    branches = [group[1].extra_fields["tempo_tree"] for group in groups]
    budgets = sorted(16 - int(s["depth"]) for s in branches if not s["fallback"])
    assert budgets  # a root too short to offer a point makes its branch sample independently
    # the roots (and branches that fell back) go as the stock loop sends them; a branch asks for the rest
    assert sorted(r[1] for r in server.log if r[1] is not None) == budgets
    assert sum(r[1] is None for r in server.log) == len(groups) + len(branches) - len(budgets)


def test_roots_equal_n_is_independent_sampling(policy) -> None:
    groups = _run(policy, tree={"roots": 8}, prompts=PROMPTS[:1])
    stats = [o.extra_fields["tempo_tree"] for o in groups[0]]
    assert all(s["branch"] == 0 and s["generated_tokens"] == s["response_tokens"] for s in stats)
    assert len({tuple(o.response_ids) for o in groups[0]}) > 1  # each session its own seed


def test_rounds_branch_from_branches(policy) -> None:
    groups = _run(policy, n=8, tree={"roots": 1, "rounds": 3})
    parents = {int(o.extra_fields["tempo_tree"]["parent"]) for g in groups for o in g}
    assert parents - {-1, 0}  # some branch continues a branch


class _FailingServer(TransformersServer):
    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        if sampling_params.get("seed") == self.bad_seed:
            await asyncio.sleep(0.05)
            raise RuntimeError("server died")
        return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)


def test_a_failing_root_fails_its_group_fast_and_leaves_no_entry(policy) -> None:
    from tempo_verl.rollout.loop import session_seed

    tokenizer, model = policy
    server = _FailingServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
    server.bad_seed = session_seed(PARAMS["seed"], "u0", 1)  # root 1 of the first prompt
    start = time.monotonic()
    with pytest.raises((RuntimeError, GroupFailed)):
        _run(policy, tree={"roots": 2, "wait_timeout_s": 300}, server=server, prompts=PROMPTS[:1])
    assert time.monotonic() - start < 30  # not the 300 s timeout
    assert not active_groups()


def test_wait_timeout_falls_back_to_independent_sampling(policy) -> None:
    tokenizer, model = policy

    class Slow(TransformersServer):
        async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
            if len(prompt_ids) == 5:  # the roots: slower than the branches wait
                await asyncio.sleep(0.3)
            return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)

    server = Slow(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
    groups = _run(policy, n=4, tree={"roots": 1, "wait_timeout_s": 0.05}, server=server, prompts=PROMPTS[:1])
    stats = [o.extra_fields["tempo_tree"] for o in groups[0]]
    assert [s["fallback"] for s in stats] == [0.0, 1.0, 1.0, 1.0]
    assert not active_groups()


def test_a_reissued_prompt_never_sees_stale_state(policy) -> None:
    """verl issues a prompt again (a retry) while its first issue is still in flight: the new issue starts a
    group of its own, so its branches continue its own roots and the first issue's branches are not released
    by another issue's root."""
    tokenizer, model = policy
    clean = _run(policy, n=4, tree={"roots": 1}, prompts=PROMPTS[:1])

    class Stuck(TransformersServer):  # the first issue's root never comes back
        calls = 0

        async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
            Stuck.calls += 1
            await asyncio.Event().wait()

    async def go():
        def loop_on(server):
            return agent_loop_factory(server, tokenizer, 4, 8, 16, {"roots": 1})

        first = asyncio.ensure_future(
            rollout_groups(
                loop_on(Stuck(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)),
                PROMPTS[:1],
                ["u0"],
                4,
                PARAMS,
            )
        )
        await asyncio.sleep(0.1)  # the first issue's sessions have all joined; its root is generating
        again = await rollout_groups(loop_on(_server(policy)), PROMPTS[:1], ["u0"], 4, PARAMS)
        assert Stuck.calls == 1  # the first issue's branches still wait for their own root
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return again

    again = asyncio.run(go())
    assert [o.response_ids for o in again[0]] == [o.response_ids for o in clean[0]]
    assert not active_groups()


def test_validation_rollouts_are_the_stock_loop(policy) -> None:
    """verl's validation flag (``trajectory["validate"]``, through its own ``_run_agent_loop``) runs the stock
    single-turn path: no tree, sessions independent; the same call for training samples a tree."""
    val = asyncio.run(_through_verl_worker(policy, "tempo_tree", validate=True, tree={"roots": 1}))[0]
    assert all("tempo_tree" not in o.extra_fields for o in val)
    assert len({tuple(o.response_ids) for o in val}) > 1
    train = asyncio.run(_through_verl_worker(policy, "tempo_tree", validate=False, tree={"roots": 1}))[0]
    assert [o.extra_fields["tempo_tree"]["branch"] for o in train] == [0.0, 1.0, 1.0, 1.0]
    assert not active_groups()


# --- the rule ----------------------------------------------------------------------------------


def test_rule_prefers_surprise_spreads_and_never_repeats() -> None:
    a = Parent(0, [5, 6, 7, 8, 9, 1], [-0.01, -2.0, -0.01, -1.5, -0.01, -0.01])
    b = Parent(1, [5, 6, 3, 8, 9, 1], [-0.01, -2.0, -0.1, -0.01, -1.9, -0.01])
    points = choose_branch_points([a, b], 4)
    assert [(p.key, t) for p, t in points] == [(0, 1), (1, 4), (0, 3), (1, 2)]
    # b[:1] == a[:1]: the same point, not offered twice; b's next best is 4, then 2 (depth 1 used)
    assert choose_branch_points([Parent(0, [1, 2], [-1.0, -1.0])], 1) == [None]  # no candidate: independent


# --- config and start-up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        (
            {"root": 2},
            "unknown key(s) ['root']; valid keys are "
            "['roots', 'rule', 'rounds', 'wait_timeout_s', 'schedule', 'segment_tokens']",
        ),
        ({"schedule": "fast"}, "custom.tree.schedule: expected one of ['rounds', 'eager', 'segments']"),
        ({"segment_tokens": 0}, "custom.tree.segment_tokens: expected a value >= 1"),
        ({"roots": 0}, "custom.tree.roots: expected a value >= 1"),
        ({"rule": "entropy"}, "custom.tree.rule: expected one of ['surprisal', 'random']"),
        ({"rounds": 1.5}, "custom.tree.rounds: expected an integer"),
    ],
)
def test_bad_knobs_are_named(tree, needle) -> None:
    with pytest.raises(ValueError, match=None) as err:
        tree_config.read_tree_config(OmegaConf.create({"custom": {"tree": tree}}))
    assert needle in str(err.value)


def test_defaults() -> None:
    cfg = tree_config.read_tree_config(OmegaConf.create({"custom": None}))
    assert cfg == tree_config.TreeRolloutConfig() and cfg.num_roots(8) == 2 and cfg.num_roots(3) == 1


def _compose(overrides: list[str]):
    import os

    import verl
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(
        config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["trainer.use_v1=False"], "needs verl's v1 trainer (trainer.use_v1=True)"),
        (["+actor_rollout_ref.rollout.custom.tree.roots=9"], "roots: expected at most rollout.n=8"),
        (["+actor_rollout_ref.rollout.custom.tree.depth=2"], "unknown key(s) ['depth']"),
    ],
)
def test_verl_start_up_check_refuses_bad_tree_runs(overrides, needle) -> None:
    from verl.utils.config import validate_config

    cfg = _compose(
        ["actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree", "actor_rollout_ref.rollout.n=8", *overrides]
    )
    with pytest.raises(ValueError) as err:
        validate_config(cfg, use_reference_policy=False, use_critic=False)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_loop_off_changes_nothing(policy) -> None:
    """verl's stock loop gives the same outputs through the wrapped worker method as through verl's original."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    cfg = _compose([])
    assert not tree_config.selects_tree(cfg)
    tree_config.check_tree_run(cfg)  # the start-up check passes a stock run
    wrapped = AgentLoopWorker._run_agent_loop
    original = wrapped.__wrapped__
    assert original is not wrapped  # the plugin did wrap it
    for validate in (False, True):
        runs = [
            asyncio.run(
                _through_verl_worker(policy, "single_turn_agent", validate, prompts=PROMPTS[:2], run_agent_loop=m)
            )
            for m in (wrapped, original)
        ]
        for got, expected in zip(*runs, strict=True):
            for a, b in zip(got, expected, strict=True):
                assert (a.prompt_ids, a.response_ids, a.response_mask) == (
                    b.prompt_ids,
                    b.response_ids,
                    b.response_mask,
                )
                assert a.response_logprobs == b.response_logprobs and a.extra_fields.keys() == b.extra_fields.keys()
                assert "tempo_tree" not in a.extra_fields


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["+actor_rollout_ref.rollout.custom.roots=2"], "actor_rollout_ref.rollout.custom.roots: the tempo_tree loop"),
        (["+actor_rollout_ref.rollout.custom.trees.roots=2"], "actor_rollout_ref.rollout.custom.trees: the tempo_tree"),
        (["+actor_rollout_ref.rollout.tree.roots=2"], "actor_rollout_ref.rollout.tree: the tempo_tree loop never"),
        (["+actor_rollout_ref.rollout.agent.tree.roots=2"], "actor_rollout_ref.rollout.agent.tree: the tempo_tree"),
        (["trainer.v1.trainer_mode=colocate_async"], "needs trainer.v1.trainer_mode=sync, got 'colocate_async'"),
        (["trainer.v1.trainer_mode=separate_async"], "needs trainer.v1.trainer_mode=sync, got 'separate_async'"),
    ],
)
def test_tree_knobs_out_of_place_and_async_modes_are_refused_at_start_up(overrides, needle) -> None:
    from verl.utils.config import validate_config

    cfg = _compose(["actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree", *overrides])
    with pytest.raises(ValueError) as err:
        validate_config(cfg, use_reference_policy=False, use_critic=False)
    assert needle in str(err.value) and "\n" not in str(err.value)
    if "custom." in needle or ".tree:" in needle:
        assert "its knobs go under actor_rollout_ref.rollout.custom.tree.<knob>" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            ["+actor_rollout_ref.rollout.custom.tree.roots=2"],
            "custom.tree is set but the tempo_tree loop is not selected",
        ),
        (["+actor_rollout_ref.rollout.tree.roots=2"], "actor_rollout_ref.rollout.tree: the tempo_tree loop never"),
    ],
)
def test_tree_knobs_without_the_loop_are_refused_at_start_up(overrides, needle) -> None:
    from verl.utils.config import validate_config

    cfg = _compose(overrides)  # verl's default single_turn_agent
    with pytest.raises(ValueError) as err:
        validate_config(cfg, use_reference_policy=False, use_critic=False)
    assert needle in str(err.value) and "\n" not in str(err.value)
    # verl's free-form custom dict keeps other keys in other runs
    tree_config.check_tree_run(_compose(["+actor_rollout_ref.rollout.custom.roots=2"]))


def test_step_metrics_group_by_verls_uid_even_with_underscores() -> None:
    """Sample keys are ``{uid}_{session}_{index}``; verl splits them from the right, so a uid may hold ``_``."""
    stats = {"generated_tokens": 4.0, "response_tokens": 8.0, "depth": 4.0, "parent": 0.0, "wait_s": 0.0}
    rows = {
        "task_a_0_0": dict(stats, branch=0.0, fallback=0.0),
        "task_a_1_0": dict(stats, branch=1.0, fallback=0.0),
        "task_b_0_0": dict(stats, branch=0.0, fallback=0.0),
        "task_b_1_0": dict(stats, branch=1.0, fallback=0.0),
    }
    field = types.SimpleNamespace(tolist=lambda: [{"tempo_tree": s} for s in rows.values()])
    tq = types.SimpleNamespace(kv_batch_get=lambda **kwargs: {"extra_fields": field})
    batch = types.SimpleNamespace(keys=list(rows), tags=[{}] * len(rows), partition_id="train")
    assert read_step_metrics(tq, batch)["rollout_tree/branches_per_group"] == 1.0  # two groups, one branch each


PY310 = Path("/root/.pyenv/versions/3.10.13/bin/python")


@pytest.mark.skipif(not PY310.exists(), reason="needs a Python 3.10 interpreter at " + str(PY310))
def test_wait_timeout_falls_back_on_python_3_10() -> None:
    # On 3.10 asyncio.wait_for raises asyncio.TimeoutError, not the builtin TimeoutError: the branch must
    # still fall back. group.py and plan.py are pure python, so they load without torch or verl.
    script = f"""
import asyncio, importlib.util, sys, types
for name in ("tempo_verl", "tempo_verl.rollout"):
    sys.modules[name] = types.ModuleType(name)
for name in ("plan", "group"):
    spec = importlib.util.spec_from_file_location(
        "tempo_verl.rollout." + name, {str(Path(tree_config.__file__).parent)!r} + "/" + name + ".py"
    )
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
group = sys.modules["tempo_verl.rollout.group"]
async def go():
    with group.joined("u", 1, 4, 1, 1, "surprisal", 0.05) as g:
        return await g.wait_plan(1)
assert asyncio.TimeoutError is not TimeoutError
print("plan:", asyncio.run(go()))
"""
    done = subprocess.run([str(PY310), "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "plan: None" in done.stdout
