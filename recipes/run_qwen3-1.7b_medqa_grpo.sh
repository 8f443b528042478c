#!/usr/bin/env bash
# GRPO on MedQA with Qwen/Qwen3-1.7B (paper settings; see docs/recipes.md).
# Twin: run_qwen3-1.7b_medqa_tempo.sh runs the same command with algorithm.adv_estimator=tempo.
# Settings and environment variables: recipes/common.sh. Extra hydra overrides pass through.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
tempo_recipe qwen3-1.7b Qwen/Qwen3-1.7B medqa grpo "$@"
