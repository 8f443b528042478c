#!/usr/bin/env bash
# TEMPO on MedQA with Qwen/Qwen3-1.7B, each group sampled as a prefix tree (the tempo_tree agent loop, 2 roots of 7;
# see docs/rollout.md). Twin: run_qwen3-1.7b_medqa_tempo.sh, the same command with independent sampling.
# Settings and environment variables: recipes/common.sh. Extra hydra overrides pass through.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
tempo_recipe qwen3-1.7b Qwen/Qwen3-1.7B medqa tempo \
    actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree \
    +actor_rollout_ref.rollout.custom.tree.roots=2 \
    trainer.experiment_name="${EXPERIMENT_NAME:-qwen3-1.7b_medqa_tempo_tree}" \
    "$@"
