#!/usr/bin/env bash
# TEMPO on MATH with Qwen/Qwen3-4B, each group sampled as a prefix tree (the tempo_tree agent loop, 2 roots of 7;
# see docs/rollout.md). Twin: run_qwen3-4b_math_tempo.sh, the same command with independent sampling.
# Settings and environment variables: recipes/common.sh. Extra hydra overrides pass through.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
tempo_recipe qwen3-4b Qwen/Qwen3-4B math tempo \
    actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree \
    +actor_rollout_ref.rollout.custom.tree.roots=2 \
    trainer.experiment_name="${EXPERIMENT_NAME:-qwen3-4b_math_tempo_tree}" \
    "$@"
