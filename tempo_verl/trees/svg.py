"""One group's picture as inline SVG: the laid-out tree (:mod:`tempo_verl.trees.layout`) drawn and coloured.

Edges leaving a branch point are coloured by their TD credit (blue positive, red negative, grey none;
thicker and darker the larger it is relative to the group's score range), dashed when the branch
token is not trained on; nodes and leaves are tinted by their value against the group's mean score.
"""

from __future__ import annotations

import html
from typing import Any

from tempo_verl.trees.layout import (
    BEND,
    CHAR_W,
    LEAF_W,
    MARGIN,
    NODE_W,
    PILL_H,
    ROW_H,
    Texts,
    TreeNode,
    build_tree,
    clean_text,
    columns,
    edge_label,
    edge_texts,
    fmt,
    fmt_td,
    masked_branch,
    place_rows,
)

__all__ = ["NEGATIVE", "NEUTRAL", "POSITIVE", "esc", "mix", "svg_group"]

POSITIVE = (33, 102, 172)  # blue
NEGATIVE = (178, 24, 43)  # red
NEUTRAL = (150, 150, 150)


def esc(text: str) -> str:
    return html.escape(clean_text(text), quote=True)


# ----------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------


def mix(colour: tuple[int, int, int], frac: float, base: tuple[int, int, int] = NEUTRAL) -> str:
    frac = min(1.0, max(0.0, frac))
    r, g, b = (round(b0 + (c - b0) * frac) for c, b0 in zip(colour, base, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _signed_colour(x: float, scale: float, base: tuple[int, int, int] = NEUTRAL) -> str:
    """Blue for positive, red for negative, ``base`` at 0; strength ``|x| / scale`` (at least 0.35 if non-zero)."""
    if x == 0 or scale <= 0:
        return mix(POSITIVE, 0.0, base)
    frac = 0.35 + 0.65 * min(1.0, abs(x) / scale)
    return mix(POSITIVE if x > 0 else NEGATIVE, frac, base)


def svg_group(record: dict, tokenizer: Any) -> str:
    """The inline SVG of one group's compressed prefix tree."""
    responses = record["responses"]
    root = build_tree(record)
    _, n_leaves = place_rows(root)
    texts = Texts(record, tokenizer)
    labels = edge_texts(root, texts, responses)
    xs, leaf_x = columns(root, labels)
    scores = [r["score"] for r in responses]
    spread = (max(scores) - min(scores)) or 1.0
    mean = sum(scores) / len(scores)
    width = leaf_x + LEAF_W + MARGIN
    top = 28
    height = top + n_leaves * ROW_H + 8
    parts: list[str] = []

    def node_x(node: TreeNode) -> float:
        return leaf_x if node.is_leaf else xs[node.level]

    def draw(node: TreeNode) -> None:
        x, y = node_x(node), top + node.y
        for e in node.edges:
            c = e.child
            cx, cy = node_x(c), top + c.y
            x0, x1 = x + NODE_W, cx
            bend = x0 + BEND
            path = f"M{x0:.1f},{y:.1f} C{bend:.1f},{y:.1f} {x0:.1f},{cy:.1f} {bend:.1f},{cy:.1f} L{x1:.1f},{cy:.1f}"
            n_tok = e.end - e.start
            if e.end_marker:
                stroke, dash = 1.5, ' stroke-dasharray="4 3"'
                colour_hex = mix(NEUTRAL, 0)
                bold, plain, tail = "", "(ends here)", ""
                full, info = "", f"{len(c.members)} response(s) end after token {e.start}"
            else:
                colour_hex = _signed_colour(e.td, spread) if e.branch else mix(NEUTRAL, 0)
                stroke = 1.6 + (4.4 * min(1.0, abs(e.td) / spread) if e.branch else 0.0)
                dash = ' stroke-dasharray="7 4"' if masked_branch(e, responses) else ""
                first, rest, info = labels[id(e)]
                full = first + rest
                cells = int((x1 - bend - 8) / CHAR_W)
                bold, plain, tail = edge_label(first, rest, cells)
            tip = (
                f"tokens {e.start}–{e.end} ({n_tok}) of response #{e.rep}"
                + (f" · branch token TD {fmt_td(e.td)}: V {fmt(node.value)} → {fmt(c.value)}" if e.branch else "")
                + f"\n\n{full}"
            )
            sign = "pos" if e.td > 0 else "neg" if e.td < 0 else "zero"
            parts.append(
                f'<g class="edge" data-start="{e.start}" data-end="{e.end}" data-rep="{e.rep}" '
                f'data-branch="{int(e.branch)}" data-td="{e.td!r}" data-sign="{sign}" '
                f'data-end-marker="{int(e.end_marker)}" data-masked="{int(masked_branch(e, responses))}">'
                f"<title>{esc(tip)}</title>"
                f'<path class="line" d="{path}" stroke="{colour_hex}" stroke-width="{stroke:.2f}"{dash}/>'
                f'<path class="hit" d="{path}"/>'
                f'<text class="label" x="{bend + 4:.1f}" y="{cy - 6:.1f}">'
                f'<tspan class="tok">{esc(bold)}</tspan>{esc(plain)}<tspan class="dim">{esc(tail)}</tspan></text>'
                f'<text class="info" x="{bend + 4:.1f}" y="{cy + 14:.1f}">{esc(info)}</text></g>'
            )
            draw(c)
        count = len(node.members)
        attrs = (
            f'class="node" data-depth="{node.depth}" data-count="{count}" data-value="{node.value!r}" '
            f'data-ends="{len(node.ends)}" data-leaf="{int(node.is_leaf)}"'
        )
        if not node.is_leaf:
            tip = (
                f"prefix of {node.depth} tokens · {count} responses through it · V = {node.value!r} (their mean score)"
            )
            parts.append(
                f"<g {attrs}><title>{esc(tip)}</title>"
                f'<circle cx="{x + NODE_W / 2:.1f}" cy="{y:.1f}" r="{NODE_W / 2}" '
                f'fill="{_tint(node.value - mean, spread / 2, strong=True)}"/>'
                f'<text class="count" x="{x + NODE_W / 2:.1f}" y="{y + 4.5:.1f}">{count}</text>'
                f'<text class="v" x="{x + NODE_W:.1f}" y="{y + 27:.1f}">V {esc(fmt(node.value))}</text></g>'
            )
            return
        leaf_scores = [scores[i] for i in node.ends]
        score_text = ", ".join(fmt(v) for v in leaf_scores)
        who = " ".join(f"#{i}" for i in node.ends)
        dup = f"×{count} " if count > 1 else ""
        # Duplicates: one score if they agree, else their mean (all of them on hover).
        shown = fmt(leaf_scores[0]) if len(set(leaf_scores)) == 1 else f"~{fmt(sum(leaf_scores) / count)}"
        short_who = who if len(who) <= 4 or count == 1 else f"#{node.ends[0]}+"
        tip = f"response{'s' if count > 1 else ''} {who}: {node.depth:,} tokens · score {score_text}" + (
            f" · V = {node.value!r}" if count > 1 else ""
        )
        parts.append(
            f'<g {attrs} data-rows="{" ".join(str(i) for i in node.ends)}" '
            f'data-scores="{" ".join(repr(float(v)) for v in leaf_scores)}"><title>{esc(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y - PILL_H / 2:.1f}" width="{LEAF_W}" height="{PILL_H}" rx="4" '
            f'fill="{_tint(sum(leaf_scores) / count - mean, spread / 2, strong=True)}"/>'
            f'<text class="score" x="{x + 8:.1f}" y="{y + 4.5:.1f}">{esc(dup)}r {esc(shown)}</text>'
            f'<text class="who" x="{x + LEAF_W - 8:.1f}" y="{y + 4.5:.1f}">{esc(short_who)}</text></g>'
        )

    draw(root)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tree" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">'
        f'<text class="axis" x="{MARGIN}" y="14">responses through the prefix · V</text>'
        f'<text class="axis" x="{leaf_x:.0f}" y="14">score r · response #</text>' + "".join(parts) + "</svg>"
    )


def _tint(x: float, scale: float, strong: bool = False) -> str:
    """Pale blue (``x > 0``) or pale red (``x < 0``) on white, stronger with ``|x| / scale`` (node fills)."""
    if x == 0 or scale <= 0:
        return "#ffffff"
    low, high = (0.2, 0.5) if strong else (0.12, 0.3)
    frac = low + (high - low) * min(1.0, abs(x) / scale)
    return mix(POSITIVE if x > 0 else NEGATIVE, frac, base=(255, 255, 255))
