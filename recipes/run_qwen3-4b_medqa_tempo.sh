#!/usr/bin/env bash
# TEMPO on MedQA with Qwen/Qwen3-4B (paper settings; see docs/recipes.md).
# Twin: run_qwen3-4b_medqa_grpo.sh runs the same command with algorithm.adv_estimator=grpo.
# Settings and environment variables: recipes/common.sh. Extra hydra overrides pass through.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
tempo_recipe qwen3-4b Qwen/Qwen3-4B medqa tempo "$@"
