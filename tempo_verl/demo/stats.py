"""The study's statistics: time to target with honest censoring, lr selection, and the paired bootstrap.

Pure numpy. The rules (fixed in docs/demo.md, "Study protocol", before any comparison):

* A run reaches the target at the first step whose trailing ``window``-step mean reward is
  ``>= target``; its *generated tokens to target* are the tokens it sampled through that step.
* A run that never reaches it is **censored**, never dropped: it is reported as ``None`` and counts
  in the ratios at its budget (all its steps, all the tokens it generated), a value below its true
  one. A ratio is therefore an upper bound on the arm's true advantage when only the arm has
  censored seeds, and a lower bound when only the baseline has; every summary says how many seeds
  were censored.
* Ratio against the baseline: ``sum(baseline) / sum(arm)`` over the paired evaluation seeds
  (> 1: the arm needs less); the 95 % interval is the percentile bootstrap that resamples seeds,
  the same seeds for both arms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_interval", "censored_costs", "paired_ratio", "selection_score", "time_to_target"]


def time_to_target(
    rewards: Sequence[float], generated_tokens: Sequence[int], target: float, window: int
) -> tuple[int, int] | None:
    """``(steps, generated tokens)`` to the first step whose trailing mean reward reaches ``target``.

    Args:
        rewards: ``(S,)`` mean reward of each step's batch.
        generated_tokens: ``(S,)`` tokens sampled at each step.
        window: steps averaged (the first ``window - 1`` steps average what there is).

    Returns:
        1-based step and cumulative tokens through it; None when the run never gets there.
    """
    if len(rewards) != len(generated_tokens):
        raise ValueError(f"rewards ({len(rewards)}) and generated_tokens ({len(generated_tokens)}) differ in length.")
    r = np.asarray(rewards, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(r)])
    steps = np.arange(1, len(r) + 1)
    trailing = (csum[steps] - csum[np.maximum(0, steps - window)]) / np.minimum(steps, window)
    hit = np.flatnonzero(trailing >= target)
    if hit.size == 0:
        return None
    s = int(hit[0]) + 1
    return s, int(np.sum(np.asarray(generated_tokens[:s], dtype=np.int64)))


def censored_costs(reached: Sequence[int | None], budgets: Sequence[int]) -> np.ndarray:
    """``(n,)`` float costs: the value where reached, the run's budget where censored (None)."""
    if len(reached) != len(budgets):
        raise ValueError(f"reached ({len(reached)}) and budgets ({len(budgets)}) differ in length.")
    return np.array([b if v is None else v for v, b in zip(reached, budgets, strict=True)], dtype=np.float64)


def paired_ratio(
    baseline: np.ndarray, arm: np.ndarray, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """``sum(baseline) / sum(arm)`` over paired seeds with a percentile bootstrap interval.

    Args:
        baseline, arm: ``(n,)`` costs of the same ``n`` seeds (index ``i`` is seed ``i`` in both).
        resamples: bootstrap draws; each draws ``n`` seed indices with replacement, shared by both arms.
        level: interval coverage.
        seed: the bootstrap's numpy seed (the interval is reproducible).

    Returns:
        ``{"ratio", "low", "high"}``; > 1 means the arm needs less than the baseline.
    """
    baseline, arm = np.asarray(baseline, dtype=np.float64), np.asarray(arm, dtype=np.float64)
    if baseline.shape != arm.shape or baseline.ndim != 1 or baseline.size == 0:
        raise ValueError(f"paired_ratio needs two equal 1-D samples, got shapes {baseline.shape} and {arm.shape}.")
    if np.any(baseline <= 0) or np.any(arm <= 0):
        raise ValueError("paired_ratio needs positive costs.")
    low, high = bootstrap_interval(
        lambda idx: baseline[idx].sum(axis=1) / arm[idx].sum(axis=1), baseline.size, resamples, level, seed
    )
    return {"ratio": float(baseline.sum() / arm.sum()), "low": low, "high": high}


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of ``n`` paired units.

    Args:
        statistic: maps ``(resamples, n)`` unit indices (drawn with replacement) to ``(resamples,)`` values;
            NaN draws (e.g. a correlation of a constant resample) are left out of the percentiles.
        resamples, level, seed: draws, coverage, and the numpy seed (the interval is reproducible).

    Returns:
        ``(low, high)``; NaN for both when every draw is NaN.
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    draws = np.asarray(statistic(idx), dtype=np.float64)
    if np.isnan(draws).all():
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def selection_score(curves: Sequence[Sequence[float]]) -> float:
    """How an lr is chosen: the mean reward over all steps (area under the curve), averaged over seeds."""
    return float(np.mean([np.mean(c) for c in curves]))
