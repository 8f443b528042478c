"""`algorithm.adv_estimator=tempo` through verl 0.9.1's own code: registry, legacy and v1 trainers, config."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import tempo_verl
from tempo_verl import compute_tempo_advantage
from tempo_verl import plugin as verl_plugin
from tempo_verl.plugin import config as tempo_config
from tempo_verl.plugin import estimator as tempo_estimator_mod
from tempo_verl.plugin import hook as verl_hook
from tempo_verl.plugin import patch, startup

verl = pytest.importorskip("verl")
from verl import DataProto  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: E402

VERL_CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def compose(overrides: list[str]):
    """verl's trainer config as main_ppo composes it (hydra struct mode included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def _rollouts(seed: int = 0, prompts: int = 4, n: int = 5, width: int = 12, holes: bool = False):
    """Padded rollouts shaped like verl's: prompts, responses, attention_mask, response_mask, rewards, uid."""
    gen = torch.Generator().manual_seed(seed)
    bs = prompts * n
    base = torch.randint(1, 4, (prompts, width), generator=gen)
    tails = torch.randint(1, 4, (bs, width), generator=gen)
    keep = torch.randint(0, width, (bs,), generator=gen)
    row_prompt = torch.randperm(bs, generator=gen) % prompts  # interleaved groups
    pos = torch.arange(width)
    responses = torch.where(pos[None] < keep[:, None], base[row_prompt], tails)
    lengths = torch.randint(1, width + 1, (bs,), generator=gen)
    attention = (pos[None] < lengths[:, None]).long()
    responses = responses * attention
    response_mask = attention.clone()
    if holes:  # tool-output tokens inside the response: part of the tree, never trained on
        response_mask[(torch.rand(bs, width, generator=gen) < 0.25)] = 0
    scores = torch.randint(0, 2, (bs,), generator=gen).float()
    rewards = torch.zeros(bs, width)
    rewards[torch.arange(bs), lengths - 1] = scores
    uid = np.array([f"prompt-{p}" for p in row_prompt.tolist()], dtype=object)
    prompt_ids = torch.randint(1, 9, (bs, 6), generator=gen)
    return dict(
        prompts=prompt_ids,
        responses=responses,
        attention=attention,
        response_mask=response_mask,
        rewards=rewards,
        uid=uid,
        lengths=lengths,
    )


def _direct(r, **kwargs):
    return compute_tempo_advantage(
        r["rewards"], r["response_mask"], r["uid"], r["responses"], response_attention_mask=r["attention"], **kwargs
    )[0]


# --- registration -------------------------------------------------------------------------------


def test_import_verl_alone_registers_tempo_through_the_entry_point():
    code = (
        "import sys, verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "fn = core_algos.get_adv_estimator_fn('tempo')\n"
        "print(fn.__module__, 'tempo_verl.core.advantage' in sys.modules)\n"
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "auto"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-2:] == ["tempo_verl.plugin.estimator", "True"]
    # With verl's plugin loading switched off, nothing registers it: the entry point is what did.
    env["VERL_USE_EXTERNAL_PLUGINS"] = "none"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "Unknown advantage estimator" in out.stderr


def test_registration_is_idempotent():
    import importlib

    importlib.reload(tempo_verl)  # a second import of the package
    verl_plugin.install()
    assert core_algos.get_adv_estimator_fn("tempo") is tempo_estimator_mod.tempo_estimator


# --- legacy trainer: verl's compute_advantage on a DataProto -------------------------------------


def _dataproto(r) -> DataProto:
    attention_mask = torch.cat([torch.ones_like(r["prompts"]), r["attention"]], dim=1)
    return DataProto.from_dict(
        tensors={
            "prompts": r["prompts"],
            "responses": r["responses"],
            "attention_mask": attention_mask,
            "response_mask": r["response_mask"],
            "token_level_rewards": r["rewards"],
            "token_level_scores": r["rewards"],
        },
        non_tensors={"uid": r["uid"]},
    )


@pytest.mark.parametrize("holes", [False, True])
def test_legacy_compute_advantage_equals_direct_estimator(holes):
    r = _rollouts(seed=1, holes=holes)
    data = ray_trainer.compute_advantage(_dataproto(r), adv_estimator="tempo", config=AlgoConfig())
    torch.testing.assert_close(data.batch["advantages"], _direct(r), rtol=0, atol=0)
    torch.testing.assert_close(data.batch["returns"], data.batch["advantages"])
    if holes:
        assert (data.batch["advantages"][r["response_mask"] == 0] == 0).all()
    # The tree metrics reach the step's metrics through verl's compute_data_metrics, for that batch only.
    other = _dataproto(r)
    other.batch["advantages"], other.batch["returns"] = data.batch["advantages"], data.batch["returns"]
    assert "tempo/branch_token_frac" not in ray_trainer.compute_data_metrics(batch=other, use_critic=False)
    metrics = ray_trainer.compute_data_metrics(batch=data, use_critic=False)
    assert 0 < metrics["tempo/branch_token_frac"] <= 1
    assert metrics["tempo/time_s"] > 0
    assert "tempo/branch_token_frac" not in ray_trainer.compute_data_metrics(batch=data, use_critic=False)


def test_legacy_dictconfig_knobs_change_the_result_as_documented():
    r = _rollouts(seed=2)
    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "tempo": {"td_coef": 0.5}})
    data = ray_trainer.compute_advantage(_dataproto(r), adv_estimator="tempo", config=cfg)
    torch.testing.assert_close(data.batch["advantages"], _direct(r, td_coef=0.5), rtol=0, atol=0)
    assert not torch.allclose(data.batch["advantages"], _direct(r))
    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "tempo": {"td_coef": 0.0}})
    data = ray_trainer.compute_advantage(_dataproto(r), adv_estimator="tempo", config=cfg)
    grpo = core_algos.get_adv_estimator_fn("grpo")(
        r["rewards"], r["response_mask"], r["uid"], norm_adv_by_std_in_grpo=False
    )
    torch.testing.assert_close(data.batch["advantages"], grpo[0], rtol=1e-6, atol=1e-6)


def test_other_estimators_are_untouched_by_the_hook():
    r = _rollouts(seed=3)
    for name in ("grpo", "grpo_vectorized", "rloo"):
        hooked = ray_trainer.compute_advantage(_dataproto(r), adv_estimator=name, config=AlgoConfig())
        fn = core_algos.get_adv_estimator_fn(name)
        plain = fn(
            token_level_rewards=r["rewards"], response_mask=r["response_mask"], index=r["uid"], config=AlgoConfig()
        )
        torch.testing.assert_close(hooked.batch["advantages"], plain[0])
        metrics = ray_trainer.compute_data_metrics(batch=hooked, use_critic=False)
        assert not any(k.startswith("tempo/") for k in metrics)


# --- config knobs and start-up check ------------------------------------------------------------


def test_knobs_compose_with_plus_and_misspelt_knob_is_named_at_startup():
    cfg = compose(["algorithm.adv_estimator=tempo", "+algorithm.tempo.td_coef=0.5"])
    assert tempo_config.read_algorithm_config(cfg.algorithm)[0].td_coef == 0.5
    tempo_config.check_run_config(cfg)  # a good tempo config passes
    bad = compose(["algorithm.adv_estimator=tempo", "+algorithm.tempo.td_coeff=0.5"])
    with pytest.raises(
        ValueError, match=r"algorithm.tempo: unknown key\(s\) \['td_coeff'\]; valid keys are \['td_coef'"
    ):
        tempo_config.check_run_config(bad)
    # verl's own validate_config (what main_ppo calls first) runs the check: the run stops at start-up.
    from verl.utils import config as verl_config

    with pytest.raises(ValueError, match="td_coeff"):
        verl_config.validate_config(bad, use_reference_policy=False, use_critic=False)
    with pytest.raises(ValueError, match=r"algorithm.tempo.td_coef: expected a float"):
        tempo_config.check_run_config(compose(["algorithm.adv_estimator=tempo", "+algorithm.tempo.td_coef=abc"]))
    # Other estimators never see the check.
    tempo_config.check_run_config(compose(["algorithm.adv_estimator=grpo", "+algorithm.tempo.td_coeff=0.5"]))


@pytest.mark.parametrize("override", ["+algorithm.td_coef=0.5", "+algorithm.tmepo.td_coef=0.5", "+algorithm.Tempo={}"])
def test_tempo_knob_outside_algorithm_tempo_stops_the_run_at_startup(override):
    from verl.utils import config as verl_config

    bad = compose(["algorithm.adv_estimator=tempo", override])
    key = override[1:].split("=")[0].split(".")[1]
    with pytest.raises(ValueError, match=rf"\['algorithm\.{key}'\] look like TEMPO knobs outside algorithm.tempo"):
        verl_config.validate_config(bad, use_reference_policy=False, use_critic=False)
    # Other estimators are not TEMPO's business.
    tempo_config.check_run_config(compose(["algorithm.adv_estimator=grpo", override]))


def test_no_verl_algorithm_key_looks_like_a_misplaced_tempo_knob():
    cfg = compose(["algorithm.adv_estimator=tempo", "+algorithm.tempo.td_coef=0.5"])
    tempo_config.check_run_config(cfg)  # verl's own algorithm keys (its yaml) pass
    every_field = {name: None for name in AlgoConfig.__dataclass_fields__}  # and every AlgoConfig field
    assert tempo_config._misplaced_knobs({**every_field, "tempo": {}}) == []


def test_estimator_without_token_ids_says_how_to_fix():
    r = _rollouts(seed=4)
    fn = core_algos.get_adv_estimator_fn("tempo")
    with pytest.raises(ValueError, match=r"responses: TEMPO needs the response token ids.*docs/verl.md"):
        fn(token_level_rewards=r["rewards"], response_mask=r["response_mask"], index=r["uid"], config=AlgoConfig())


def test_missing_hook_stops_a_tempo_run_naming_the_verl_version(monkeypatch, caplog):
    monkeypatch.setattr(patch, "_problems", {})
    future_trainer = types.ModuleType("verl.trainer.ppo.v1.trainer_base")
    future_trainer.PPOTrainer = type("PPOTrainer", (), {})  # a verl without _compute_advantage
    future_trainer.tq = types.SimpleNamespace(kv_batch_get=None)
    with caplog.at_level("WARNING"):
        verl_hook._patch_v1(future_trainer)
    assert "_compute_advantage(self, batch, metrics) not found" in caplog.text
    cfg = compose(["algorithm.adv_estimator=tempo"])
    with pytest.raises(
        RuntimeError, match=rf"tempo cannot run: .*verl {verl.__version__} .*_compute_advantage.* not found"
    ):
        startup.check_run(cfg)
    startup.check_run(compose(["algorithm.adv_estimator=grpo"]))  # other runs are not affected
    r = _rollouts(seed=5)
    fn = core_algos.get_adv_estimator_fn("tempo")
    with pytest.raises(RuntimeError, match="could not patch verl"):
        fn(token_level_rewards=r["rewards"], response_mask=r["response_mask"], index=r["uid"], config=cfg.algorithm)
    # Passing the token ids directly (as a verl that hands estimators the batch would) still works.
    adv, _ = fn(
        token_level_rewards=r["rewards"],
        response_mask=r["response_mask"],
        index=r["uid"],
        config=cfg.algorithm,
        batch={"responses": r["responses"], "attention_mask": torch.cat([r["prompts"] * 0 + 1, r["attention"]], 1)},
    )
    torch.testing.assert_close(adv, _direct(r))


def test_registry_entry_takes_grpos_keywords_and_refuses_a_misspelt_one():
    r = _rollouts(seed=9)
    tempo, grpo = core_algos.get_adv_estimator_fn("tempo"), core_algos.get_adv_estimator_fn("grpo")
    common = dict(token_level_rewards=r["rewards"], response_mask=r["response_mask"], index=r["uid"])
    given = dict(responses=r["responses"], response_attention_mask=r["attention"])
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "tempo": {"td_coef": 0.0}})
    for kwargs in ({"norm_adv_by_std_in_grpo": False}, {"epsilon": 0.5}, {"norm_adv_by_std_in_grpo": True}):
        # td_coef=0 is grpo: each keyword grpo takes changes the answer exactly as it changes grpo's
        got, _ = tempo(**common, **given, config=config, **kwargs)
        torch.testing.assert_close(got, grpo(**common, **kwargs)[0], rtol=1e-6, atol=1e-6)
    # a keyword wins over the config, as the explicit value
    got, _ = tempo(**common, **given, config=config, td_coef=0.5)
    torch.testing.assert_close(got, _direct(r, td_coef=0.5), rtol=0, atol=0)
    for fn in (grpo, tempo):
        with pytest.raises(TypeError, match="norm_adv_by_std"):
            fn(**common, norm_adv_by_std=False)


#: A tempo run verl's own validate_config accepts (it wants micro-batch sizes).
RUNNABLE = [
    "algorithm.adv_estimator=tempo",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
]
TREE_LOOP = "actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree"


def test_a_broken_tree_loop_refuses_tempo_tree_runs_only():
    """The tree loop cannot register (its module fails to import): a tempo run starts, a tempo_tree run is refused."""
    code = (
        "import sys\n"
        "sys.modules['tempo_verl.rollout.loop'] = None  # its import now fails, as a broken install would\n"
        "import tempo_verl, verl\n"
        "from hydra import compose, initialize_config_dir\n"
        "from verl.utils.config import validate_config\n"
        f"with initialize_config_dir(config_dir={VERL_CONFIG_DIR!r}, version_base=None):\n"
        f"    tempo = compose(config_name='ppo_trainer', overrides={RUNNABLE!r})\n"
        f"    tree = compose(config_name='ppo_trainer', overrides={[*RUNNABLE, TREE_LOOP]!r})\n"
        "validate_config(tempo, use_reference_policy=False, use_critic=False)\n"
        "print('tempo: started')\n"
        "try:\n"
        "    validate_config(tree, use_reference_policy=False, use_critic=False)\n"
        "    print('tempo_tree: started')\n"
        "except RuntimeError as err:\n"
        "    print('tempo_tree: refused:', err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("tempo")]  # verl prints too
    assert lines[:1] == ["tempo: started"], out.stdout + out.stderr[-3000:]
    assert len(lines) == 2 and lines[1].startswith(
        "tempo_tree: refused: actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree cannot run"
    ), out.stdout + out.stderr[-3000:]
    assert "tempo_verl.rollout.loop" in lines[1]


# --- v1 trainer: PPOTrainer._compute_advantage with TransferQueue on a local Ray -----------------


@pytest.fixture(scope="module")
def transfer_queue():
    ray = pytest.importorskip("ray")
    tq = pytest.importorskip("transfer_queue")
    cfg = compose(
        [
            "algorithm.adv_estimator=tempo",
            "+algorithm.tempo.td_coef=0.5",
            "transfer_queue.enable=True",
            "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        ]
    )
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(cfg.transfer_queue)
    yield tq, cfg
    tq.close()
    ray.shutdown()


def _put_agent_loop_samples(tq, r, sessions_with_two_outputs=()):
    """Write samples the way verl's AgentLoopWorkerTQ does: unpadded, keys {uid}_{session}_{index}."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    keys, fields, tags, rows = [], [], [], []
    session_of: dict[str, int] = {}
    for i, uid in enumerate(r["uid"]):
        session = session_of[uid] = session_of.get(uid, -1) + 1
        n = int(r["lengths"][i])
        outputs = 2 if i in sessions_with_two_outputs else 1
        for k in range(outputs):
            out = AgentLoopOutput(
                prompt_ids=r["prompts"][i].tolist(),
                response_ids=r["responses"][i, :n].tolist(),
                response_mask=r["response_mask"][i, :n].tolist(),
                reward_score=float(r["rewards"][i].sum()),
                num_turns=2,
                metrics={},
            )
            field = out.as_dict()
            field.update({"uid": uid, "session_id": session, "global_steps": 3})
            keys.append(f"{uid}_{session}_{k}")
            fields.append(field)
            tags.append({"status": "success"})
            rows.append(i)
    tq.kv_batch_put(keys=keys, fields=list_of_dict_to_tensordict(fields), tags=tags, partition_id="train")
    return keys, tags, rows


@pytest.mark.slow
def test_v1_trainer_compute_advantage_equals_direct_estimator(transfer_queue):
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    tq, cfg = transfer_queue
    r = _rollouts(seed=6, prompts=5, n=4, width=16, holes=True)
    keys, tags, rows = _put_agent_loop_samples(tq, r, sessions_with_two_outputs={0, 7})
    trainer = types.SimpleNamespace(config=cfg, global_steps=3)
    metrics: dict = {}
    PPOTrainer._compute_advantage(trainer, KVBatchMeta(keys=keys, tags=tags, partition_id="train"), metrics)

    got = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
    got = got.to_padded_tensor(0.0)
    # verl hands all outputs of all sessions of a prompt to the estimator as one group.
    rows_t = torch.tensor(rows)
    width = int(r["lengths"][rows_t].max())
    expected = compute_tempo_advantage(
        r["rewards"][rows_t, :width],
        r["response_mask"][rows_t, :width],
        r["uid"][rows_t.numpy()],
        r["responses"][rows_t, :width],
        response_attention_mask=r["attention"][rows_t, :width],
        td_coef=0.5,
    )[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    grpo = core_algos.get_adv_estimator_fn("grpo")(
        r["rewards"][rows_t, :width], r["response_mask"][rows_t, :width], r["uid"][rows_t.numpy()]
    )[0]
    assert not torch.allclose(got, grpo)  # the tree mattered
    for key in (
        "branch_token_frac",
        "divergence_depth/mean",
        "divergence_depth/max",
        "shared_prefix_group_frac",
        "td_abs/mean",
        "time_s",
        "hook_fetch_time_s",
    ):
        assert f"tempo/{key}" in metrics, key
    assert metrics["tempo/shared_prefix_group_frac"] > 0


@pytest.mark.slow
def test_v1_trainer_grpo_is_untouched(transfer_queue):
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    tq, cfg = transfer_queue
    r = _rollouts(seed=7, prompts=3, n=3, width=8)
    r["uid"] = np.array([f"grpo-{u}" for u in r["uid"]], dtype=object)  # samples of their own
    keys, tags, rows = _put_agent_loop_samples(tq, r)
    cfg_grpo = OmegaConf.merge(cfg, {"algorithm": {"adv_estimator": "grpo_vectorized"}})
    metrics: dict = {}
    trainer = types.SimpleNamespace(config=cfg_grpo, global_steps=1)
    PPOTrainer._compute_advantage(trainer, KVBatchMeta(keys=keys, tags=tags, partition_id="train"), metrics)
    got = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
    got = got.to_padded_tensor(0.0)
    width, rows_t = got.shape[1], torch.tensor(rows)
    grpo = core_algos.get_adv_estimator_fn("grpo_vectorized")(
        r["rewards"][rows_t, :width], r["response_mask"][rows_t, :width], r["uid"][rows_t.numpy()]
    )[0]
    torch.testing.assert_close(got, grpo)
    assert not any(k.startswith("tempo/") for k in metrics)


def test_dump_knobs_write_the_trees_of_a_step_and_never_stop_it(tmp_path, caplog):
    from tempo_verl.trees.readers import load_tree_input

    r = _rollouts(seed=8)
    data = _dataproto(r)
    data.meta_info["global_steps"] = 50
    cfg = OmegaConf.create({"tempo": {"dump": {"dir": str(tmp_path / "trees"), "every": 50, "groups": 2}}})
    out = ray_trainer.compute_advantage(data, adv_estimator="tempo", config=cfg)
    torch.testing.assert_close(out.batch["advantages"], _direct(r))
    writer = tempo_estimator_mod._dump_writers[tempo_config.read_algorithm_config(cfg)[0].dump]
    writer.flush(timeout=30)
    records = load_tree_input(tmp_path / "trees")
    assert len(records) == 2 and {rec["step"] for rec in records} == {50}
    # A dump folder that cannot be written: the step still completes, with a WARNING.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    cfg = OmegaConf.create({"tempo": {"dump": {"dir": str(blocker / "trees"), "every": 1}}})
    with caplog.at_level("WARNING"):
        out = ray_trainer.compute_advantage(_dataproto(r), adv_estimator="tempo", config=cfg)
        tempo_estimator_mod._dump_writers[tempo_config.read_algorithm_config(cfg)[0].dump].flush(timeout=30)
    torch.testing.assert_close(out.batch["advantages"], _direct(r))
    assert "tree dump" in caplog.text
