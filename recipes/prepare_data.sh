#!/usr/bin/env bash
# Write every data set the recipes read into $DATA_DIR (verl RL parquet; see docs/data.md):
#   $DATA_DIR/{math,medqa}/{train,test}.parquet and $DATA_DIR/{gsm_hard,amc23,medmcqa,mmlu_medical}/test.parquet
#
# Environment (default in brackets):
#   DATA_DIR    output folder                                   [$HOME/data/tempo]
#   SUBSET      "paper": 1000 train / 100 test prompts of MATH and MedQA, as in the paper; "full": all  [full]
#   MAX_TRAIN / MAX_TEST   explicit subset sizes (override SUBSET)
#   MAX_EVAL    keep a random subset of this many rows of each evaluation set   [all]
#   SEED        seed of every subset draw                        [0]
#   TEMPO_VERL  the tempo-verl command                           [tempo-verl]
# Loads from the Hugging Face hub (HF_ENDPOINT / HF_HOME apply); for local copies call
# `tempo-verl data ... --local-file` yourself (see `tempo-verl data math --help`).
set -euo pipefail

DATA_DIR=${DATA_DIR:-$HOME/data/tempo}
SEED=${SEED:-0}
read -r -a TEMPO_VERL_CMD <<<"${TEMPO_VERL:-tempo-verl}"

case "${SUBSET:-full}" in
    paper)
        MAX_TRAIN=${MAX_TRAIN:-1000}
        MAX_TEST=${MAX_TEST:-100}
        ;;
    full) ;;
    *)
        echo "prepare_data.sh: SUBSET must be 'paper' or 'full', got '${SUBSET}'" >&2
        exit 2
        ;;
esac

subset_args=(--seed "$SEED")
if [ -n "${MAX_TRAIN:-}" ]; then subset_args+=(--max-train "$MAX_TRAIN"); fi
if [ -n "${MAX_TEST:-}" ]; then subset_args+=(--max-test "$MAX_TEST"); fi
eval_args=(--seed "$SEED")
if [ -n "${MAX_EVAL:-}" ]; then eval_args+=(--max-rows "$MAX_EVAL"); fi

"${TEMPO_VERL_CMD[@]}" data math --out "$DATA_DIR" "${subset_args[@]}"
"${TEMPO_VERL_CMD[@]}" data medqa --out "$DATA_DIR" "${subset_args[@]}"
"${TEMPO_VERL_CMD[@]}" data eval --out "$DATA_DIR" "${eval_args[@]}"
echo "prepare_data.sh: data written to $DATA_DIR" >&2
