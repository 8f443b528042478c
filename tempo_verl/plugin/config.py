"""TEMPO's knobs under verl's ``algorithm.tempo`` (no verl import: read from any mapping-like config).

On verl's command line (hydra struct mode) new keys need a ``+``::

    algorithm.adv_estimator=tempo +algorithm.tempo.td_coef=0.5
    +algorithm.tempo.dump.dir=/tmp/trees +algorithm.tempo.dump.every=50 +algorithm.tempo.dump.groups=8
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from tempo_verl.knobs import check_keys, get, keys, number
from tempo_verl.plugin.state import ESTIMATOR_NAME

__all__ = ["DumpConfig", "TempoConfig", "check_run_config", "read_algorithm_config"]


@dataclass(frozen=True)
class DumpConfig:
    """Opt-in dump of the prefix trees TEMPO builds (off while ``dir`` is unset).

    Attributes:
        dir: folder for one ``tempo_trees_step{N}.jsonl`` file per dumped step.
        every: dump the steps that are multiples of this (and the first step a run dumps, so a short
            or resumed run still leaves a file).
        groups: at most this many groups (prompts) per dumped step.
    """

    dir: str | None = None
    every: int = 50
    groups: int = 8

    @property
    def enabled(self) -> bool:
        return bool(self.dir)


@dataclass(frozen=True)
class TempoConfig:
    """``algorithm.tempo``.

    Attributes:
        td_coef: weight of the TD correction at branch tokens (1.0: the paper's TEMPO; 0.0: GRPO).
        dump: see :class:`DumpConfig`.
    """

    td_coef: float = 1.0
    dump: DumpConfig = field(default_factory=DumpConfig)


def read_algorithm_config(config: Any) -> tuple[TempoConfig, bool | None]:
    """Read TEMPO's knobs from verl's ``algorithm`` config.

    Args:
        config: a DictConfig (what verl's trainers pass), an ``AlgoConfig`` dataclass (it has no
            ``tempo`` field, so the knobs keep their defaults), a dict, or None.

    Returns:
        ``(tempo_config, norm_adv_by_std_in_grpo)``; the latter is None when the config does not say.

    Raises:
        ValueError: naming the bad key and the valid ones, or the bad value and what was expected.
    """
    norm = get(config, "norm_adv_by_std_in_grpo", None)
    node = get(config, "tempo", None)
    check_keys("algorithm.tempo", node, TempoConfig)
    td_coef = number("algorithm.tempo.td_coef", get(node, "td_coef", TempoConfig.td_coef), float)
    dump_node = get(node, "dump", None)
    check_keys("algorithm.tempo.dump", dump_node, DumpConfig)
    directory = get(dump_node, "dir", None)
    if directory is not None and not isinstance(directory, str):
        raise ValueError(f"algorithm.tempo.dump.dir: expected a folder path, got {directory!r}.")
    dump = DumpConfig(
        dir=directory or None,
        every=number("algorithm.tempo.dump.every", get(dump_node, "every", DumpConfig.every), int, minimum=1),
        groups=number("algorithm.tempo.dump.groups", get(dump_node, "groups", DumpConfig.groups), int, minimum=1),
    )
    return TempoConfig(td_coef=td_coef, dump=dump), (None if norm is None else bool(norm))


def _misplaced_knobs(algorithm: Any) -> list[str]:
    """Keys of ``algorithm`` that look like TEMPO knobs outside ``algorithm.tempo`` (verl would ignore them).

    A key is suspect when it is one of TEMPO's knob names (``td_coef``, ``dump``) or a near miss of
    ``tempo`` (``tmepo``, ``Tempo``, ``tempo_``): verl's struct config accepts such ``+algorithm.*`` keys and
    never reads them, so the run would train with the defaults.
    """
    knobs = {f.name for f in fields(TempoConfig)}
    suspects = []
    for key in keys("algorithm", algorithm):
        if key == "tempo":
            continue
        if key in knobs or difflib.get_close_matches(key.lower(), ["tempo"], n=1, cutoff=0.6):
            suspects.append(key)
    return suspects


def check_run_config(config: Any) -> None:
    """Start-up check of the knobs of a verl run config that uses ``tempo``, before any worker starts.

    Raises:
        ValueError: a bad ``algorithm.tempo`` knob (named, with the valid keys), or a TEMPO knob put
            outside ``algorithm.tempo`` (named, with where it belongs).
    """
    algorithm = config.get("algorithm") if hasattr(config, "get") else getattr(config, "algorithm", None)
    if algorithm is None or str(algorithm.get("adv_estimator")) != ESTIMATOR_NAME:
        return
    misplaced = _misplaced_knobs(algorithm)
    if misplaced:
        valid = [f.name for f in fields(TempoConfig)]
        raise ValueError(
            f"algorithm: key(s) {['algorithm.' + k for k in misplaced]} look like TEMPO knobs outside "
            f"algorithm.tempo, where verl would ignore them and train with the defaults; TEMPO's knobs are "
            f"algorithm.tempo.{{{', '.join(valid)}}} (on verl's command line: +algorithm.tempo.{valid[0]}=...)."
        )
    read_algorithm_config(algorithm)
