# shellcheck shell=bash
# Shared body of the TEMPO recipes. Every recipe script is one line,
#     tempo_recipe <model tag> <default model> <task> <estimator> "$@"
# so a TEMPO recipe and its GRPO twin run the same command except for the estimator (and the run
# names). Settings are the paper's (the authors' public verl 0.4 scripts), spelled for verl 0.9.1.
#
# Environment (default in brackets); nothing else is machine-specific:
#   MODEL_PATH          local path or hub id of the model          [the recipe's, e.g. Qwen/Qwen3-1.7B]
#   DATA_DIR            where recipes/prepare_data.sh wrote files  [$HOME/data/tempo]
#   N_GPUS_PER_NODE     GPUs per node                              [8]
#   NNODES              nodes (multi-node: start Ray first, see docs/recipes.md)   [1]
#   LOGGER              trainer.logger, a hydra list               [["console","wandb"]]
#   PROJECT_NAME        trainer.project_name                       [tempo_verl]
#   EXPERIMENT_NAME     trainer.experiment_name                    [<model tag>_<task>_<estimator>]
#   MAX_RESPONSE_LENGTH data.max_response_length                   [8192]
#   TEST_FREQ           validate every this many steps             [100]
#   TOTAL_EPOCHS        trainer.total_epochs                       [15]
#   SAVE_FREQ           checkpoint every this many steps (-1: never)   [-1]
#   SEED                data.seed (same prompt order for both twins)    [42]
#   ROLLOUT_TP          vLLM tensor parallel size                  [1]
#   GPU_MEMORY_UTILIZATION  vLLM's share of GPU memory             [0.6]
#   TD_COEF             TEMPO recipes only: +algorithm.tempo.td_coef   [1.0]
#   PYTHON              interpreter that runs verl.trainer.main_ppo    [python3]
#                       PYTHON=echo is a dry run: the command is printed, not run (docs/recipes.md);
#                       the CPU tests point it at a recorder of the arguments
# Arguments after the script name are extra hydra overrides, appended last so they win, e.g.
#     bash recipes/run_qwen3-1.7b_math_tempo.sh trainer.total_training_steps=300 trainer.test_freq=25

tempo_recipe() {
    if [ "$#" -lt 4 ]; then
        echo "tempo_recipe: usage: tempo_recipe MODEL_TAG DEFAULT_MODEL TASK ESTIMATOR [hydra overrides...]" >&2
        return 2
    fi
    local model_tag=$1 default_model=$2 task=$3 estimator=$4
    shift 4

    local model_path=${MODEL_PATH:-$default_model}
    local data_dir=${DATA_DIR:-$HOME/data/tempo}
    data_dir=${data_dir%/}

    local train_file
    local -a val_files
    case "$task" in
        math)
            train_file=$data_dir/math/train.parquet
            val_files=("$data_dir/math/test.parquet" "$data_dir/gsm_hard/test.parquet" "$data_dir/amc23/test.parquet")
            ;;
        medqa)
            train_file=$data_dir/medqa/train.parquet
            val_files=("$data_dir/medqa/test.parquet" "$data_dir/medmcqa/test.parquet" "$data_dir/mmlu_medical/test.parquet")
            ;;
        *)
            echo "tempo_recipe: unknown task '$task' (expected math or medqa)" >&2
            return 2
            ;;
    esac
    case "$estimator" in
        tempo | grpo) ;;
        *)
            echo "tempo_recipe: unknown estimator '$estimator' (expected tempo or grpo)" >&2
            return 2
            ;;
    esac

    # Fail now, not after Ray and vLLM have started, when a local data file is missing.
    local file missing=0
    for file in "$train_file" "${val_files[@]}"; do
        if [[ "$file" != *://* && ! -f "$file" ]]; then
            echo "tempo_recipe: missing $file" >&2
            missing=1
        fi
    done
    if [ "$missing" -ne 0 ]; then
        echo "tempo_recipe: write the data first: DATA_DIR=$data_dir bash recipes/prepare_data.sh" >&2
        return 1
    fi

    local val_list="" sep=""
    for file in "${val_files[@]}"; do
        val_list+="$sep'$file'"
        sep=","
    done

    local -a args=(
        "algorithm.adv_estimator=$estimator"
        "algorithm.use_kl_in_reward=False"
        "data.train_files='$train_file'"
        "data.val_files=[$val_list]"
        "data.train_batch_size=512"
        "data.max_prompt_length=1024"
        "data.max_response_length=${MAX_RESPONSE_LENGTH:-8192}"
        "data.filter_overlong_prompts=True"
        "data.truncation=error"
        "data.seed=${SEED:-42}"
        "actor_rollout_ref.model.path='$model_path'"
        "actor_rollout_ref.model.enable_gradient_checkpointing=True"
        "actor_rollout_ref.model.use_remove_padding=True"
        "actor_rollout_ref.actor.strategy=fsdp"
        "actor_rollout_ref.actor.optim.lr=1e-6"
        "actor_rollout_ref.actor.ppo_mini_batch_size=64"
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"
        "actor_rollout_ref.actor.use_kl_loss=False"
        "actor_rollout_ref.actor.entropy_coeff=0"
        "actor_rollout_ref.actor.clip_ratio_low=0.2"
        "actor_rollout_ref.actor.clip_ratio_high=0.28"
        "actor_rollout_ref.rollout.name=vllm"
        "actor_rollout_ref.rollout.n=7"
        "actor_rollout_ref.rollout.temperature=1.0"
        "actor_rollout_ref.rollout.tensor_model_parallel_size=${ROLLOUT_TP:-1}"
        "actor_rollout_ref.rollout.gpu_memory_utilization=${GPU_MEMORY_UTILIZATION:-0.6}"
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8"
        "reward.custom_reward_function.path=pkg://tempo_verl.recipes.rewards"
        "reward.custom_reward_function.name=compute_score"
        "trainer.logger=${LOGGER:-[\"console\",\"wandb\"]}"
        "trainer.project_name=${PROJECT_NAME:-tempo_verl}"
        "trainer.experiment_name=${EXPERIMENT_NAME:-${model_tag}_${task}_${estimator}}"
        "trainer.n_gpus_per_node=${N_GPUS_PER_NODE:-8}"
        "trainer.nnodes=${NNODES:-1}"
        "trainer.total_epochs=${TOTAL_EPOCHS:-15}"
        "trainer.test_freq=${TEST_FREQ:-100}"
        "trainer.save_freq=${SAVE_FREQ:--1}"
        "trainer.val_before_train=True"
    )
    if [ "$estimator" = tempo ]; then
        # TEMPO's knob is new to verl's schema, hence the "+" (struct mode). hydra refuses to add a
        # key twice, so an extra argument that sets it (+algorithm.tempo.td_coef=0.5) replaces this one.
        local extra td_given=0
        for extra in "$@"; do
            if [[ "$extra" == *algorithm.tempo.td_coef=* ]]; then td_given=1; fi
        done
        if [ "$td_given" -eq 0 ]; then
            args+=("+algorithm.tempo.td_coef=${TD_COEF:-1.0}")
        fi
    fi

    echo "tempo_recipe: $model_tag $task $estimator: model $model_path, data $data_dir" >&2
    "${PYTHON:-python3}" -m verl.trainer.main_ppo "${args[@]}" "$@"
}
