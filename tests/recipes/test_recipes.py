"""The recipes' trainer calls, composed against the installed verl's own trainer config.

Each recipe script is run for real with ``PYTHON`` pointed at a recorder that writes its argv as
JSON instead of starting verl (``recipes/common.sh`` calls ``${PYTHON:-python3} -m
verl.trainer.main_ppo ...``). The recorded overrides are composed with hydra's compose API
against ``verl/trainer/config/ppo_trainer.yaml`` (the config ``main_ppo`` loads, struct mode), then
checked with verl's own ``validate_config``: a misspelt key or a wrongly typed value fails here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
SIZES = {"1.7b": "Qwen/Qwen3-1.7B", "4b": "Qwen/Qwen3-4B"}
TASKS = ("math", "medqa")
ESTIMATORS = ("tempo", "grpo")
RECIPE_NAMES = [f"run_qwen3-{size}_{task}_{est}.sh" for size in SIZES for task in TASKS for est in ESTIMATORS]
TREE_NAMES = [f"run_qwen3-{size}_{task}_tempo_tree.sh" for size in SIZES for task in TASKS]  # docs/rollout.md
DATA_FILES = {
    "math": ["math/train.parquet", "math/test.parquet", "gsm_hard/test.parquet", "amc23/test.parquet"],
    "medqa": ["medqa/train.parquet", "medqa/test.parquet", "medmcqa/test.parquet", "mmlu_medical/test.parquet"],
}

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["TEMPO_RECIPE_ARGV_OUT"], "w") as fh:
    json.dump(sys.argv[1:], fh)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with (empty) files where the recipes look, and the argv recorder."""
    root = tmp_path_factory.mktemp("recipes")
    for files in DATA_FILES.values():
        for rel in files:
            (root / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "data" / rel).write_bytes(b"")
    recorder = root / "record_argv"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    return root


def run_recipe(
    workdir: Path, name: str, *extra: str, env: dict[str, str] | None = None, expect_rc: int = 0
) -> subprocess.CompletedProcess[str]:
    out = workdir / f"{name}.{abs(hash((extra, tuple(sorted((env or {}).items())))))}.json"
    full_env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "MODEL_PATH",
            "DATA_DIR",
            "N_GPUS_PER_NODE",
            "NNODES",
            "LOGGER",
            "PROJECT_NAME",
            "EXPERIMENT_NAME",
            "MAX_RESPONSE_LENGTH",
            "TEST_FREQ",
            "TOTAL_EPOCHS",
            "SAVE_FREQ",
            "SEED",
            "ROLLOUT_TP",
            "GPU_MEMORY_UTILIZATION",
            "TD_COEF",
        }
    }
    full_env.update(
        {"PYTHON": str(workdir / "record_argv"), "TEMPO_RECIPE_ARGV_OUT": str(out), "DATA_DIR": str(workdir / "data")}
    )
    full_env.update(env or {})
    proc = subprocess.run(
        ["bash", str(RECIPES / name), *extra], env=full_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == expect_rc, proc.stderr
    proc.argv_file = out  # type: ignore[attr-defined]
    return proc


def recorded_overrides(workdir: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    proc = run_recipe(workdir, name, *extra, env=env)
    argv = json.loads(proc.argv_file.read_text())  # type: ignore[attr-defined]
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"], argv[:3]
    return argv[2:]


def compose(overrides: list[str]) -> DictConfig:
    """The config ``verl.trainer.main_ppo`` would build from these command-line overrides."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


_DEFAULTS: dict[str, Any] = {}


def check_value_types(cfg: DictConfig) -> None:
    """Raise TypeError naming the key where a number or boolean of verl's defaults got another type.

    verl's yaml nodes are untyped (``data.train_batch_size=lots`` composes), so this compares the
    composed config with the defaults: a value that is a number (bool) by default must stay a
    number (bool).
    """
    if not _DEFAULTS:
        _DEFAULTS.update(flatten(OmegaConf.to_container(compose([]), resolve=False)))
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        default = _DEFAULTS.get(key)
        if isinstance(value, str) and value.startswith("${"):
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError(f"{key}: expected a boolean like the default {default!r}, got {value!r}")
        elif isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"{key}: expected a number like the default {default!r}, got {value!r}")


def check(overrides: list[str]) -> DictConfig:
    """Compose, check value types, and run verl's own ``validate_config`` (as ``main_ppo`` does first)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = compose(overrides)
    check_value_types(cfg)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    return cfg


_COMPOSED: dict[str, DictConfig] = {}


def composed(workdir: Path, name: str) -> DictConfig:
    if name not in _COMPOSED:
        _COMPOSED[name] = check(recorded_overrides(workdir, name))
    return _COMPOSED[name]


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        items: dict[str, Any] = {}
        for key, value in node.items():
            items.update(flatten(value, f"{prefix}{key}."))
        return items
    return {prefix.rstrip("."): node}


def test_every_recipe_and_twin_exists() -> None:
    present = sorted(p.name for p in RECIPES.glob("run_*.sh"))
    assert present == sorted(RECIPE_NAMES + TREE_NAMES)
    for name in RECIPE_NAMES + TREE_NAMES:
        assert os.access(RECIPES / name, os.X_OK), f"{name} is not executable"


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_composes_with_paper_settings(workdir: Path, name: str) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.import_utils import load_extern_object

    _, size, task, estimator = name.removesuffix(".sh").split("_")
    size = size.removeprefix("qwen3-")
    cfg = composed(workdir, name)
    actor = cfg.actor_rollout_ref.actor
    rollout = cfg.actor_rollout_ref.rollout

    assert cfg.algorithm.adv_estimator == estimator
    assert cfg.actor_rollout_ref.model.path == SIZES[size]
    assert rollout.name == "vllm" and rollout.n == 7 and rollout.temperature == 1.0
    assert cfg.data.train_batch_size == 512
    assert actor.ppo_mini_batch_size == 64 and actor.ppo_micro_batch_size_per_gpu == 8
    assert actor.optim.lr == pytest.approx(1e-6)
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (pytest.approx(0.2), pytest.approx(0.28))
    assert actor.use_kl_loss is False and cfg.algorithm.use_kl_in_reward is False
    assert actor.entropy_coeff == 0
    assert actor.strategy == "fsdp" and cfg.actor_rollout_ref.model.enable_gradient_checkpointing is True
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (1024, 8192)
    assert cfg.trainer.total_epochs == 15 and cfg.trainer.test_freq == 100
    assert cfg.trainer.n_gpus_per_node == 8 and cfg.trainer.nnodes == 1
    assert list(cfg.trainer.logger) == ["console", "wandb"]
    assert cfg.trainer.experiment_name == f"qwen3-{size}_{task}_{estimator}"

    data_dir = workdir / "data"
    assert cfg.data.train_files == str(data_dir / DATA_FILES[task][0])
    assert list(cfg.data.val_files) == [str(data_dir / rel) for rel in DATA_FILES[task][1:]]

    if estimator == "tempo":
        assert cfg.algorithm.tempo.td_coef == 1.0
        from tempo_verl.plugin.config import read_algorithm_config

        tempo_config, _ = read_algorithm_config(cfg.algorithm)
        assert tempo_config.td_coef == 1.0 and not tempo_config.dump.enabled
    else:
        assert "tempo" not in cfg.algorithm

    # composed() ran verl's validate_config; no reference model is needed without KL
    assert not need_reference_policy(cfg) and not need_critic(cfg)

    # the reward function resolves the way verl loads it
    from tempo_verl.recipes.rewards import compute_score

    fn = load_extern_object(cfg.reward.custom_reward_function.path, cfg.reward.custom_reward_function.name)
    assert fn is compute_score


def _compare(workdir: Path, first: str, second: str) -> tuple[dict, dict, set[str]]:
    """The flattened configs two recipes compose, and the keys whose values differ (or exist in one only)."""
    a, b = (flatten(OmegaConf.to_container(composed(workdir, name), resolve=False)) for name in (first, second))
    return a, b, {key for key in a.keys() | b.keys() if a.get(key, "<absent>") != b.get(key, "<absent>")}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("task", TASKS)
def test_twins_differ_only_in_estimator_and_names(workdir: Path, size: str, task: str) -> None:
    tempo, grpo, differing = _compare(workdir, f"run_qwen3-{size}_{task}_tempo.sh", f"run_qwen3-{size}_{task}_grpo.sh")
    assert differing == {"algorithm.adv_estimator", "algorithm.tempo.td_coef", "trainer.experiment_name"}
    assert (tempo["algorithm.adv_estimator"], grpo["algorithm.adv_estimator"]) == ("tempo", "grpo")
    assert "algorithm.tempo.td_coef" not in grpo


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("task", TASKS)
def test_tree_twins_switch_on_the_tree_loop_only(workdir: Path, size: str, task: str) -> None:
    tempo, tree, differing = _compare(
        workdir, f"run_qwen3-{size}_{task}_tempo.sh", f"run_qwen3-{size}_{task}_tempo_tree.sh"
    )
    loop = "actor_rollout_ref.rollout.agent.default_agent_loop"
    custom = "actor_rollout_ref.rollout.custom"
    assert differing == {loop, f"{custom}.tree.roots", "trainer.experiment_name"}
    assert (tempo[loop], tree[loop], tree[f"{custom}.tree.roots"]) == ("single_turn_agent", "tempo_tree", 2)
    assert tree["trainer.experiment_name"] == f"qwen3-{size}_{task}_tempo_tree"


def test_environment_and_extra_overrides_reach_the_config(workdir: Path, tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    for rel in DATA_FILES["medqa"]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(b"")
    env = {
        "MODEL_PATH": "/models/my-qwen3-4b",
        "DATA_DIR": str(data) + "/",
        "N_GPUS_PER_NODE": "4",
        "NNODES": "2",
        "LOGGER": '["console"]',
        "PROJECT_NAME": "proj",
        "EXPERIMENT_NAME": "exp1",
        "MAX_RESPONSE_LENGTH": "4096",
        "TEST_FREQ": "5",
        "TOTAL_EPOCHS": "3",
        "SAVE_FREQ": "50",
        "SEED": "7",
        "ROLLOUT_TP": "2",
        "GPU_MEMORY_UTILIZATION": "0.45",
        "TD_COEF": "0.5",
    }
    overrides = recorded_overrides(
        workdir, "run_qwen3-4b_medqa_tempo.sh", "trainer.total_training_steps=300", "trainer.test_freq=25", env=env
    )
    cfg = check(overrides)
    assert cfg.actor_rollout_ref.model.path == "/models/my-qwen3-4b"
    assert cfg.data.train_files == str(data / "medqa/train.parquet")
    assert (cfg.trainer.n_gpus_per_node, cfg.trainer.nnodes) == (4, 2)
    assert list(cfg.trainer.logger) == ["console"]
    assert (cfg.trainer.project_name, cfg.trainer.experiment_name) == ("proj", "exp1")
    assert cfg.data.max_response_length == 4096 and cfg.actor_rollout_ref.rollout.response_length == 4096
    assert (cfg.trainer.total_epochs, cfg.trainer.save_freq, cfg.data.seed) == (3, 50, 7)
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 2
    assert cfg.actor_rollout_ref.rollout.gpu_memory_utilization == pytest.approx(0.45)
    assert cfg.algorithm.tempo.td_coef == 0.5
    # extra arguments come last and win
    assert cfg.trainer.total_training_steps == 300 and cfg.trainer.test_freq == 25


def test_td_coef_given_as_argument_replaces_the_recipe_default(workdir: Path) -> None:
    cfg = check(recorded_overrides(workdir, "run_qwen3-1.7b_math_tempo.sh", "+algorithm.tempo.td_coef=0.25"))
    assert cfg.algorithm.tempo.td_coef == 0.25


DOCUMENTED_OVERRIDES = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.actor.use_dynamic_bsz=True",
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384",
    "actor_rollout_ref.actor.fsdp_config.param_offload=True",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True",
    "+data.apply_chat_template_kwargs.enable_thinking=False",
    "trainer.total_training_steps=300",
]


def test_overrides_in_the_docs_compose(workdir: Path) -> None:
    docs = (REPO / "docs" / "recipes.md").read_text()
    for override in DOCUMENTED_OVERRIDES:
        assert override in docs.replace("\n  ", " "), override
    cfg = check(recorded_overrides(workdir, "run_qwen3-4b_medqa_grpo.sh", *DOCUMENTED_OVERRIDES))
    assert cfg.actor_rollout_ref.actor.use_dynamic_bsz is True
    assert cfg.actor_rollout_ref.actor.fsdp_config.param_offload is True
    assert cfg.data.apply_chat_template_kwargs.enable_thinking is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("actor_rollout_ref.actor.clip_ratio_hgh=0.3", "clip_ratio_hgh"),
        ("data.train_batch_size=lots", "data.train_batch_size"),
        ("actor_rollout_ref.rollout.temperature=hot", "actor_rollout_ref.rollout.temperature"),
        ("actor_rollout_ref.actor.use_kl_loss=1", "actor_rollout_ref.actor.use_kl_loss"),
        ("algorithm.tempo.td_coef=0.5", "tempo"),  # without "+", struct mode refuses a new key
    ],
)
def test_composition_catches_misspelt_keys_and_bad_types(workdir: Path, extra: str, message: str) -> None:
    overrides = recorded_overrides(workdir, "run_qwen3-1.7b_math_grpo.sh", extra)
    with pytest.raises(Exception, match=message):
        check(overrides)


def test_missing_data_fails_before_starting_verl(workdir: Path, tmp_path: Path) -> None:
    proc = run_recipe(workdir, "run_qwen3-1.7b_math_tempo.sh", env={"DATA_DIR": str(tmp_path)}, expect_rc=1)
    assert "prepare_data.sh" in proc.stderr and "math/train.parquet" in proc.stderr
    assert not proc.argv_file.exists()  # type: ignore[attr-defined]


def test_recipes_hold_nothing_machine_specific() -> None:
    for path in RECIPES.glob("*.sh"):
        text = path.read_text()
        for needle in ("CUDA_VISIBLE_DEVICES=", "/home/", "/root/", "/mnt/", "/data/"):
            assert needle not in text.replace("$HOME/data/tempo", ""), f"{path.name} contains {needle}"
