"""``inspect.txt`` (the printed table) and ``inspect.png`` (departure depths; V against the continuation estimate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot", "table"]

MODES = ("independent", "tree")


def _q(d: dict[str, Any], digits: int = 0) -> str:
    """``median [q25, q75]``."""
    if d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} [{d['q25']:.{digits}f}, {d['q75']:.{digits}f}]"


def _ci(d: dict[str, Any]) -> str:
    if d.get("value") is None:
        return "-"
    if d.get("low") is None:
        return f"{d['value']:.2f}"
    return f"{d['value']:.2f} [{d['low']:.2f}, {d['high']:.2f}]"


def table(report: dict[str, Any]) -> str:
    """The plain-text summary that the command prints and writes as ``inspect.txt``."""
    s = report["settings"]
    modes = report["modes"]
    lines = [
        f"tempo-verl inspect: {report['model']['name']} ({report['model']['parameters'] / 1e6:.1f}M parameters), "
        f"{s['prompts']} prompts ({report['data']['source']}) x {s['n']} responses, <= {s['max_new_tokens']} tokens, "
        f"tree: {s['roots']} roots, seed {s['seed']}, {s['device']}",
        "",
        f"{'':34}{'independent':>24}{'tree':>24}",
    ]

    def row(label: str, fn) -> None:
        lines.append(f"{label:34}" + "".join(f"{fn(modes[m]):>24}" for m in MODES))

    row("accuracy", lambda m: f"{m['accuracy']:.3f}")
    row("groups with mixed outcomes", lambda m: f"{m['groups_with_mixed_outcomes']} of {m['prompts']}")
    row("generated tokens", lambda m: f"{m['generated_tokens']}")
    row("response length, median [IQR]", lambda m: _q(m["response_length"]))
    row("responses at the token budget", lambda m: f"{m['response_length']['at_budget']} of {m['responses']}")
    row("sampling wall time (s)", lambda m: f"{m['wall_s']['sampling_s']:.1f}")
    row("departure depth, median [IQR]", lambda m: _q(m["departure_depth"]))
    row("branch nodes per group", lambda m: f"{m['branch_nodes']['per_group']:.1f}")
    row("branch node depth, median [IQR]", lambda m: _q(m["branch_nodes"]["depth"]))
    row("responses through a node, med.", lambda m: _q(m["branch_nodes"]["responses_through"]))
    row(
        "branch tokens: number/word/format",
        lambda m: "/".join(str(m["branch_tokens"]["kinds"][k]) for k in ("number", "word", "format")),
    )
    row("tokens where TEMPO != GRPO", lambda m: f"{100 * m['credit']['differ_token_share']:.1f} %")
    row("advantage mass that differs", lambda m: f"{100 * m['credit']['differ_mass_share']:.1f} %")
    tree = modes["tree"]
    ratio = modes["independent"]["generated_tokens"] / max(1, tree["generated_tokens"])
    lines += [
        "",
        f"tree: roots {tree['wall_s'].get('roots_s', 0):.1f} s, branches {tree['wall_s'].get('branches_s', 0):.1f} s; "
        f"independent generates {ratio:.2f}x the tree's tokens",
        "most frequent branch tokens (tree): "
        + ", ".join(f"{text!r} {count}" for text, count in tree["branch_tokens"]["most_frequent"][:10]),
    ]
    v = report["value_check"]
    lines += [
        "",
        f"Is V right? {v['nodes']} branch nodes, {v['children']} child prefixes, {v['m']} continuations each "
        f"(continuation estimate's mean s.e. {v['continuation_se_mean'] or 0:.2f}); 95 % bootstrap intervals",
        f"{'':34}{'TEMPO V(child)':>24}{'GRPO (one outcome)':>24}",
        f"{'correlation with p_hat':34}{_ci(v['tempo']['correlation']):>24}{_ci(v['grpo']['correlation']):>24}",
        f"{'mean absolute error':34}{_ci(v['tempo']['mae']):>24}{_ci(v['grpo']['mae']):>24}",
        f"{'TD sign agrees (decided pairs)':34}{_ci(v['tempo']['td_sign_agreement']):>24}"
        f"{_ci(v['grpo']['td_sign_agreement']):>24}",
        f"{'decided pairs':34}{v['tempo']['decided_pairs']:>24}{v['grpo']['decided_pairs']:>24}",
        "",
        f"total {report['wall_s']['total_s']:.0f} s (model load {report['wall_s']['load_s']:.0f} s, "
        f"value check {report['wall_s']['value_check_s']:.0f} s)",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Two panels: departure depths (independent against tree) and V against the continuation estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    budget = report["settings"]["max_new_tokens"]
    bins = np.linspace(0, budget, 25)
    for mode, colour in zip(MODES, ("#888888", "#1f77b4"), strict=True):
        values = report["modes"][mode]["departure_depth"]["values"]
        left.hist(values, bins=bins, histtype="step", linewidth=2, color=colour, label=f"{mode} (n={len(values)})")
    left.set_xlabel("departure depth: tokens shared with the nearest sibling")
    left.set_ylabel("responses")
    left.set_title("Where responses part", fontsize=10)
    left.legend(fontsize=8)

    pairs = report["value_check"]["pairs"]
    right.plot([0, 1], [0, 1], color="#cccccc", linewidth=1)
    if pairs:
        rng = np.random.default_rng(0)
        p = np.array([r["p_child"] for r in pairs])
        tempo = np.array([r["v_child"] for r in pairs])
        grpo = np.array([r["grpo_value"] for r in pairs]) + rng.uniform(-0.02, 0.02, len(pairs))
        right.scatter(p, grpo, s=14, color="#bbbbbb", label="GRPO: one outcome (jittered)")
        right.scatter(p, tempo, s=18, color="#1f77b4", label="TEMPO: V(child)")
    right.set_xlabel(f"continuation estimate p_hat ({report['value_check']['m']} continuations)")
    right.set_ylabel("value the estimator uses")
    right.set_title("Is V right? child prefixes of sampled branch nodes", fontsize=10)
    right.set_xlim(-0.05, 1.05)
    right.set_ylim(-0.05, 1.05)
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"tempo-verl inspect: {report['model']['name']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
