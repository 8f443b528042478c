"""Data preparation for the TEMPO recipes: verl RL parquet files for MATH, MedQA and the OOD evaluation sets.

See :mod:`tempo_verl.recipes.data.prepare` (the functions) and :mod:`tempo_verl.recipes.data.cli` (``tempo-verl data``).
"""

from tempo_verl.recipes.data.prepare import (
    EVAL_SETS,
    MMLU_MEDICAL_SUBJECTS,
    SOURCES,
    TRAIN_SETS,
    PrepareError,
    SplitReport,
    choice_prompt,
    convert_records,
    load_records,
    math_prompt,
    prepare_amc23,
    prepare_eval,
    prepare_gsm_hard,
    prepare_math,
    prepare_medmcqa,
    prepare_medqa,
    prepare_mmlu_medical,
    prepare_source,
    rl_schema,
    write_rl_parquet,
)

__all__ = [
    "EVAL_SETS",
    "MMLU_MEDICAL_SUBJECTS",
    "SOURCES",
    "TRAIN_SETS",
    "PrepareError",
    "SplitReport",
    "choice_prompt",
    "convert_records",
    "load_records",
    "math_prompt",
    "prepare_amc23",
    "prepare_eval",
    "prepare_gsm_hard",
    "prepare_math",
    "prepare_medmcqa",
    "prepare_medqa",
    "prepare_mmlu_medical",
    "prepare_source",
    "rl_schema",
    "write_rl_parquet",
]
