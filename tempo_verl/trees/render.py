"""Draw TEMPO's prefix trees: one self-contained HTML page with inline SVG (no network, no JS library).

Each group becomes a compressed prefix tree: runs of tokens that no response leaves are merged into
one edge, labelled with their text (or token ids); a node shows how many responses pass through
it and its prefix value ``V``; the edge that leaves a branch point starts with the branch token
and is coloured by the TD credit ``V(s_{t+1}) - V(s_t)`` that TEMPO gave it (blue: positive, red:
negative, strength: size relative to the group's score range); leaves show the scores. Long
edges are elided in the middle; the full text shows on hover (click pins it).

Input: records in the ``tempo-tree/1`` format (:mod:`tempo_verl.trees.dump`).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tempo_verl.trees.dump import TreeInputError, input_files, load_tree_input, pairwise_lcp, prefix_value

__all__ = ["TreeEdge", "TreeNode", "build_tree", "render_html", "summary_stats", "write_tree_page"]

# Geometry (px). Labels use a monospace font, so a character is CHAR_W wide.
CHAR_W = 7.25
ROW_H = 52
NODE_W = 26  # an inner node: a circle with the number of responses through it, V below
PILL_H = 22  # a leaf badge's height
MARGIN = 40  # room for the root's V label
LEAF_W = 104
PAGE_W = 1340  # the width a tree aims to fit (wider trees scroll sideways)
BEND = 22  # the curve from a node to its child's row
INNER_CELLS = 26  # label characters an edge into an inner node gets at most
LEAF_SPAN = 170  # the least room for the edges into the leaves
MIN_SPAN = 60
INFO_W = 6.3  # width of a character of the small info line
POSITIVE = (33, 102, 172)  # blue
NEGATIVE = (178, 24, 43)  # red
NEUTRAL = (150, 150, 150)


@dataclass
class TreeNode:
    """A node of a compressed prefix tree: the prefix of length ``depth`` shared by ``members``.

    Attributes:
        depth: prefix length in tokens.
        members: indices (into the record's responses) of the responses through this prefix.
        ends: the members whose response ends exactly here.
        value: ``V(prefix)``, the mean score of the members (as stored in the record).
        edges: outgoing edges.
        level, y: layout (edges from the root; vertical position).
    """

    depth: int
    members: list[int]
    ends: list[int]
    value: float
    edges: list[TreeEdge] = field(default_factory=list)
    level: int = 0
    y: float = 0.0

    @property
    def is_leaf(self) -> bool:
        return not self.edges


@dataclass
class TreeEdge:
    """A run of tokens ``[start, end)`` of response ``rep`` that no member of ``child`` leaves.

    Attributes:
        branch: the parent is a branch point, so the first token of the edge carries TD credit.
        td: ``V(s_{start+1}) - V(s_start)`` (0 for a non-branch edge).
        end_marker: a zero-token edge to the responses that end at the parent (no TD: no token).
    """

    child: TreeNode
    rep: int
    start: int
    end: int
    branch: bool
    td: float
    end_marker: bool = False


def build_tree(record: dict) -> TreeNode:
    """The compressed prefix tree of one record (children of a node sorted by value, highest first)."""
    responses = record["responses"]
    root_value = float(record["root_value"])
    ids = [r["ids"] for r in responses]
    lengths = [r["length"] for r in responses]
    lcp = pairwise_lcp(ids)

    def value(i: int, depth: int) -> float:
        return prefix_value(responses[i], root_value, depth)

    def build(members: list[int], depth: int) -> TreeNode:
        ends = [i for i in members if lengths[i] == depth]
        cont = [i for i in members if lengths[i] > depth]
        node = TreeNode(depth=depth, members=members, ends=ends, value=value(members[0], depth))
        by_token: dict[int, list[int]] = {}
        for i in cont:
            by_token.setdefault(ids[i][depth], []).append(i)
        branch = len(by_token) > 1 or (bool(ends) and bool(cont))
        for same in by_token.values():
            rep = same[0]
            end = lengths[rep] if len(same) == 1 else int(min(lcp[rep, j] for j in same[1:]))
            child = build(same, end)
            td = value(rep, depth + 1) - value(rep, depth) if branch else 0.0
            node.edges.append(TreeEdge(child=child, rep=rep, start=depth, end=end, branch=branch, td=td))
        node.edges.sort(key=lambda e: (-e.child.value, e.rep))
        if ends and cont:
            stop = TreeNode(depth=depth, members=ends, ends=ends, value=value(ends[0], depth))
            node.edges.append(TreeEdge(child=stop, rep=ends[0], start=depth, end=depth, branch=False, td=0.0))
            node.edges[-1].end_marker = True
        return node

    return build(list(range(len(responses))), 0)


# ----------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------

_BUCKETS = [(0, 0), (1, 3), (4, 15), (16, 63), (64, 255), (256, 1023), (1024, 4095), (4096, None)]


def _bucket_label(lo: int, hi: int | None) -> str:
    def k(x: int) -> str:
        return f"{x // 1024}k" if x >= 1024 and x % 1024 == 0 else str(x)

    if hi is None:
        return f"≥{k(lo)}"
    return k(lo) if lo == hi else f"{k(lo)}–{k(hi + 1) if hi >= 1023 else hi}"


def summary_stats(records: Sequence[dict]) -> dict[str, Any]:
    """Branching statistics of the groups.

    Returns:
        ``groups``, ``responses``, ``multi_groups`` (groups of two or more responses),
        ``shared_groups`` (of those, groups where some two responses share at least their first
        token), ``tokens`` (response tokens), ``branch_tokens`` (branch tokens: where another response
        of the group leaves the path), ``td_nonzero`` (branch tokens with non-zero TD),
        ``divergence`` (per response of a multi-response group: how many leading tokens it shares
        with another response before it goes its own way), ``histogram`` (``[(label, count)]`` of
        ``divergence``).
    """
    stats: dict[str, Any] = dict.fromkeys(
        ("groups", "responses", "multi_groups", "shared_groups", "tokens", "branch_tokens", "td_nonzero"), 0
    )
    divergence: list[int] = []
    for record in records:
        responses = record["responses"]
        stats["groups"] += 1
        stats["responses"] += len(responses)
        for r in responses:
            stats["tokens"] += r["length"]
            stats["branch_tokens"] += len(r["branches"])
            stats["td_nonzero"] += sum(1 for _, before, after in r["branches"] if after != before)
        if len(responses) < 2:
            continue
        stats["multi_groups"] += 1
        lcp = pairwise_lcp([r["ids"] for r in responses])
        np.fill_diagonal(lcp, -1)
        deepest = lcp.max(axis=1)
        divergence.extend(int(d) for d in deepest)
        stats["shared_groups"] += int(deepest.max() >= 1)
    stats["divergence"] = divergence
    stats["histogram"] = [
        (_bucket_label(lo, hi), sum(1 for d in divergence if d >= lo and (hi is None or d <= hi)))
        for lo, hi in _BUCKETS
    ]
    return stats


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------

_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _clean(text: str) -> str:
    """Text safe for XML: lone surrogates and control characters made visible."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _esc(text: str) -> str:
    return html.escape(_clean(text), quote=True)


def _visible(text: str) -> str:
    """One-line form of a label: newlines and tabs as symbols."""
    return _clean(text).replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")


def _width(text: str) -> int:
    """Display width in monospace cells (wide East Asian characters count two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cut(text: str, cells: int, from_end: bool = False) -> str:
    """The longest head (or tail) of ``text`` at most ``cells`` wide."""
    out, used = [], 0
    for c in reversed(text) if from_end else text:
        w = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        if used + w > cells:
            break
        out.append(c)
        used += w
    return "".join(reversed(out)) if from_end else "".join(out)


class _Texts:
    """Decoded text of token runs of one record's responses (prefix-difference decoding, cached)."""

    def __init__(self, record: dict, tokenizer: Any) -> None:
        self.ids = [r["ids"] for r in record["responses"]]
        self.tokenizer = tokenizer
        self._prefix: dict[tuple[int, int], str] = {}

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _prefix_text(self, i: int, k: int) -> str:
        key = (i, k)
        if key not in self._prefix:
            self._prefix[key] = self._decode(self.ids[i][:k]) if k else ""
        return self._prefix[key]

    def text(self, i: int, start: int, end: int) -> str:
        """Text of tokens ``[start, end)`` of response ``i`` (token ids joined by spaces without a tokenizer)."""
        if end <= start:
            return ""
        if self.tokenizer is None:
            return " ".join(str(t) for t in self.ids[i][start:end])
        before, upto = self._prefix_text(i, start), self._prefix_text(i, end)
        if upto.startswith(before):
            return upto[len(before) :]
        return self._decode(self.ids[i][start:end])


# ----------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------


def _mix(colour: tuple[int, int, int], frac: float, base: tuple[int, int, int] = NEUTRAL) -> str:
    frac = min(1.0, max(0.0, frac))
    r, g, b = (round(b0 + (c - b0) * frac) for c, b0 in zip(colour, base, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _signed_colour(x: float, scale: float, base: tuple[int, int, int] = NEUTRAL) -> str:
    """Blue for positive, red for negative, ``base`` at 0; strength ``|x| / scale`` (at least 0.35 if non-zero)."""
    if x == 0 or scale <= 0:
        return _mix(POSITIVE, 0.0, base)
    frac = 0.35 + 0.65 * min(1.0, abs(x) / scale)
    return _mix(POSITIVE if x > 0 else NEGATIVE, frac, base)


def _fmt(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if abs(x) < 1e4 else f"{x:.3g}"


def _fmt_td(x: float) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "±") + _fmt(abs(x))


# ----------------------------------------------------------------------------------------------
# One group
# ----------------------------------------------------------------------------------------------


def _layout(root: TreeNode) -> tuple[int, int]:
    """Assign levels and rows (leaves top to bottom); returns ``(max_level, number of leaves)``."""
    leaves = 0
    max_level = 0

    def walk(node: TreeNode, level: int) -> None:
        nonlocal leaves, max_level
        node.level = level
        max_level = max(max_level, level)
        if node.is_leaf:
            node.y = leaves * ROW_H
            leaves += 1
            return
        for e in node.edges:
            walk(e.child, level + 1)
        node.y = (node.edges[0].child.y + node.edges[-1].child.y) / 2

    walk(root, 0)
    return max_level, leaves


def _holes_in(response: dict, start: int, end: int) -> int:
    return sum(max(0, min(e, end) - max(s, start)) for s, e in response["mask_holes"])


def _edge_label(first: str, rest: str, cells: int) -> tuple[str, str, str]:
    """Elide ``first + rest`` to ``cells``: ``(bold head, plain head, tail)`` with "…" between head and tail."""
    first, rest = _visible(first), _visible(rest)
    if _width(first) + _width(rest) <= cells:
        return first, rest, ""
    cells = max(cells, 5)
    head_cells = (cells - 1) * 3 // 5
    tail = _cut(rest, cells - 1 - head_cells, from_end=True)
    bold = _cut(first, head_cells)
    plain = _cut(rest, head_cells - _width(bold))
    return bold, plain, "…" + tail


def _masked_branch(e: TreeEdge, responses: list[dict]) -> bool:
    """The branch token is inside a ``response_mask`` hole for every response through the edge (no credit given)."""
    return e.branch and all(_holes_in(responses[i], e.start, e.start + 1) for i in e.child.members)


def _edge_info(e: TreeEdge, responses: list[dict]) -> str:
    """The small line under an edge: its tokens, how many are not trained on, its TD."""
    untrained = _holes_in(responses[e.rep], e.start, e.end)
    info = f"{e.end - e.start:,} tok" + (f" ({untrained:,} untrained)" if untrained else "")
    if e.branch:
        info += f" · TD {_fmt_td(e.td)}" + (" masked: no credit" if _masked_branch(e, responses) else "")
    return info


def _edge_texts(root: TreeNode, texts: _Texts, responses: list[dict]) -> dict[int, tuple[str, str, str]]:
    """``id(edge) -> (first token text, the rest, info line)`` for every edge with tokens."""
    out: dict[int, tuple[str, str, str]] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for e in node.edges:
            if not e.end_marker:
                first, rest = texts.text(e.rep, e.start, e.start + 1), texts.text(e.rep, e.start + 1, e.end)
                if texts.tokenizer is None and rest:
                    rest = " " + rest  # token ids are separated by spaces
                out[id(e)] = (first, rest, _edge_info(e, responses))
            stack.append(e.child)
    return out


def _columns(root: TreeNode, labels: dict[int, tuple[str, str, str]]) -> tuple[list[float], float]:
    """x of the inner nodes of each level, and x of the leaves (aligned in one column).

    An edge into an inner node asks for room for its label (up to ``INNER_CELLS`` characters) and
    needs room for its info line; the leaves' edges take what is left of ``PAGE_W``, at least
    ``LEAF_SPAN``. When the asks do not fit they are cut down, never below the needs (deep trees
    then scroll sideways).
    """
    ask: dict[int, float] = {}
    floor: dict[int, float] = {}
    inner_levels = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if not node.is_leaf:
            inner_levels = max(inner_levels, node.level)
        for e in node.edges:
            c = e.child
            if not c.is_leaf:
                first, rest, info = labels.get(id(e), ("", "", ""))
                cells = min(INNER_CELLS, _width(_visible(first + rest)) + 1)
                need = BEND + 12 + len(info) * INFO_W
                floor[c.level] = max(floor.get(c.level, MIN_SPAN), need)
                ask[c.level] = max(ask.get(c.level, MIN_SPAN), need, BEND + 12 + cells * CHAR_W)
            stack.append(c)
    levels = range(1, inner_levels + 1)
    spans = [ask.get(level, MIN_SPAN) for level in levels]
    floors = [floor.get(level, MIN_SPAN) for level in levels]
    fixed = 2 * MARGIN + (inner_levels + 1) * NODE_W + LEAF_W
    room = PAGE_W - fixed - LEAF_SPAN
    if sum(spans) > room:  # share what is left above the needs, favouring the shallow (earliest) branch points
        extra = max(0.0, room - sum(floors))
        weights = [(s - f) / level for level, s, f in zip(levels, spans, floors, strict=True)]
        grant = [extra * w / sum(weights) for w in weights]
        spans = [f + min(s - f, g) for s, f, g in zip(spans, floors, grant, strict=True)]
    xs = [float(MARGIN)]
    for span in spans:
        xs.append(xs[-1] + NODE_W + span)
    leaf_x = xs[-1] + NODE_W + max(LEAF_SPAN, PAGE_W - fixed - sum(spans))
    return xs, leaf_x


def _svg_group(record: dict, tokenizer: Any) -> str:
    """The inline SVG of one group's compressed prefix tree."""
    responses = record["responses"]
    root = build_tree(record)
    _, n_leaves = _layout(root)
    texts = _Texts(record, tokenizer)
    labels = _edge_texts(root, texts, responses)
    xs, leaf_x = _columns(root, labels)
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
                colour_hex = _mix(NEUTRAL, 0)
                bold, plain, tail = "", "(ends here)", ""
                full, info = "", f"{len(c.members)} response(s) end after token {e.start}"
            else:
                colour_hex = _signed_colour(e.td, spread) if e.branch else _mix(NEUTRAL, 0)
                stroke = 1.6 + (4.4 * min(1.0, abs(e.td) / spread) if e.branch else 0.0)
                dash = ' stroke-dasharray="7 4"' if _masked_branch(e, responses) else ""
                first, rest, info = labels[id(e)]
                full = first + rest
                cells = int((x1 - bend - 8) / CHAR_W)
                bold, plain, tail = _edge_label(first, rest, cells)
            tip = (
                f"tokens {e.start}–{e.end} ({n_tok}) of response #{e.rep}"
                + (f" · branch token TD {_fmt_td(e.td)}: V {_fmt(node.value)} → {_fmt(c.value)}" if e.branch else "")
                + f"\n\n{full}"
            )
            sign = "pos" if e.td > 0 else "neg" if e.td < 0 else "zero"
            parts.append(
                f'<g class="edge" data-start="{e.start}" data-end="{e.end}" data-rep="{e.rep}" '
                f'data-branch="{int(e.branch)}" data-td="{e.td!r}" data-sign="{sign}" '
                f'data-end-marker="{int(e.end_marker)}" data-masked="{int(_masked_branch(e, responses))}">'
                f"<title>{_esc(tip)}</title>"
                f'<path class="line" d="{path}" stroke="{colour_hex}" stroke-width="{stroke:.2f}"{dash}/>'
                f'<path class="hit" d="{path}"/>'
                f'<text class="label" x="{bend + 4:.1f}" y="{cy - 6:.1f}">'
                f'<tspan class="tok">{_esc(bold)}</tspan>{_esc(plain)}<tspan class="dim">{_esc(tail)}</tspan></text>'
                f'<text class="info" x="{bend + 4:.1f}" y="{cy + 14:.1f}">{_esc(info)}</text></g>'
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
                f"<g {attrs}><title>{_esc(tip)}</title>"
                f'<circle cx="{x + NODE_W / 2:.1f}" cy="{y:.1f}" r="{NODE_W / 2}" '
                f'fill="{_tint(node.value - mean, spread / 2, strong=True)}"/>'
                f'<text class="count" x="{x + NODE_W / 2:.1f}" y="{y + 4.5:.1f}">{count}</text>'
                f'<text class="v" x="{x + NODE_W:.1f}" y="{y + 27:.1f}">V {_esc(_fmt(node.value))}</text></g>'
            )
            return
        leaf_scores = [scores[i] for i in node.ends]
        score_text = ", ".join(_fmt(v) for v in leaf_scores)
        who = " ".join(f"#{i}" for i in node.ends)
        dup = f"×{count} " if count > 1 else ""
        # Duplicates: one score if they agree, else their mean (all of them on hover).
        shown = _fmt(leaf_scores[0]) if len(set(leaf_scores)) == 1 else f"~{_fmt(sum(leaf_scores) / count)}"
        short_who = who if len(who) <= 4 or count == 1 else f"#{node.ends[0]}+"
        tip = f"response{'s' if count > 1 else ''} {who}: {node.depth:,} tokens · score {score_text}" + (
            f" · V = {node.value!r}" if count > 1 else ""
        )
        parts.append(
            f'<g {attrs} data-rows="{" ".join(str(i) for i in node.ends)}" '
            f'data-scores="{" ".join(repr(float(v)) for v in leaf_scores)}"><title>{_esc(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y - PILL_H / 2:.1f}" width="{LEAF_W}" height="{PILL_H}" rx="4" '
            f'fill="{_tint(sum(leaf_scores) / count - mean, spread / 2, strong=True)}"/>'
            f'<text class="score" x="{x + 8:.1f}" y="{y + 4.5:.1f}">{_esc(dup)}r {_esc(shown)}</text>'
            f'<text class="who" x="{x + LEAF_W - 8:.1f}" y="{y + 4.5:.1f}">{_esc(short_who)}</text></g>'
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
    return _mix(POSITIVE if x > 0 else NEGATIVE, frac, base=(255, 255, 255))


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#222;
background:#fafafa}
header{padding:12px 18px 8px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 6px}
h2{font-size:15px;margin:0 0 4px}
.stats{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
.stat b{font-size:18px;display:block}
.stat{max-width:235px}\n.stat.hist{max-width:none}\n.stat span{color:#555;font-size:12px;display:block}
.legend{font-size:12px;color:#444;margin-top:6px}
.legend i{display:inline-block;width:26px;height:4px;vertical-align:middle;margin:0 4px 0 10px}
section.group{margin:12px 8px;padding:8px 10px;background:#fff;border:1px solid #ddd;border-radius:6px}
.meta{color:#555;font-size:12px;margin-bottom:4px}
details{font-size:12px;margin-bottom:4px}
details pre{white-space:pre-wrap;max-height:240px;overflow:auto;background:#f4f4f4;padding:6px}
.scroll{overflow-x:auto}
svg.tree text{font:12px "DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre;fill:#222}
svg.tree .line{fill:none}
svg.tree .hit{fill:none;stroke:transparent;stroke-width:14px}
svg.tree .edge:hover .line{filter:drop-shadow(0 0 2px #888)}
svg.tree .tok{font-weight:bold}
svg.tree .dim{fill:#666}
svg.tree .info{font-size:10.5px;fill:#666}
svg.tree .count{font-weight:bold;text-anchor:middle}
svg.tree .v{text-anchor:end;font-size:11px;fill:#333}
svg.tree .who{text-anchor:end;fill:#333;font-size:11px}
svg.tree .score{font-weight:bold}
svg.tree .axis{font-size:10.5px;fill:#888}
svg.tree rect,svg.tree circle{stroke:#666;stroke-width:1}
svg.hist text{font:11px system-ui,sans-serif;fill:#444}
#tip{position:fixed;display:none;max-width:640px;max-height:60vh;overflow:auto;background:#fffef5;
border:1px solid #999;box-shadow:0 2px 8px rgba(0,0,0,.25);padding:8px;font:12px/1.4 "DejaVu Sans Mono",monospace;
white-space:pre-wrap;word-break:break-word;z-index:10}
#tip.pinned{border-color:#333}
"""

_JS = """
(function(){
  var tip=document.getElementById('tip'), pinned=false;
  document.querySelectorAll('svg.tree g').forEach(function(g){
    var t=g.querySelector(':scope > title'); if(!t) return;
    g.dataset.tip=t.textContent; t.remove();
  });
  function show(e,g){tip.textContent=g.dataset.tip;tip.style.display='block';
    var x=Math.min(e.clientX+14, window.innerWidth-tip.offsetWidth-8), y=e.clientY+14;
    if(y+tip.offsetHeight>window.innerHeight) y=Math.max(4,e.clientY-tip.offsetHeight-10);
    tip.style.left=x+'px'; tip.style.top=y+'px';}
  document.addEventListener('mouseover',function(e){ if(pinned) return;
    var g=e.target.closest('g[data-tip]'); if(g) show(e,g); else tip.style.display='none';});
  document.addEventListener('click',function(e){
    if(tip.contains(e.target)) return;
    var g=e.target.closest('g[data-tip]');
    if(g){pinned=true;tip.classList.add('pinned');show(e,g);} else {pinned=false;tip.classList.remove('pinned');
      tip.style.display='none';}});
  document.addEventListener('keydown',function(e){ if(e.key==='Escape'){pinned=false;tip.classList.remove('pinned');
    tip.style.display='none';}});
})();
"""


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "–"


def _histogram_svg(histogram: list[tuple[str, int]]) -> str:
    """A small bar chart of the first-divergence depths."""
    bar_w, gap, h = 44, 6, 70
    peak = max((c for _, c in histogram), default=0) or 1
    parts = []
    for k, (label, count) in enumerate(histogram):
        x = k * (bar_w + gap)
        bh = round(h * count / peak)
        parts.append(
            f'<g class="bucket" data-label="{_esc(label)}" data-count="{count}">'
            f'<rect x="{x}" y="{14 + h - bh}" width="{bar_w}" height="{bh}" fill="#5b8db8"/>'
            f'<text x="{x + bar_w / 2}" y="{12 + h - bh}" text-anchor="middle">{count}</text>'
            f'<text x="{x + bar_w / 2}" y="{h + 28}" text-anchor="middle">{_esc(label)}</text></g>'
        )
    width = len(histogram) * (bar_w + gap)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" width="{width}" height="{h + 34}">'
        + "".join(parts)
        + "</svg>"
    )


def _header(title: str, stats: dict[str, Any], drawn: int) -> str:
    """Title, summary numbers, the first-divergence histogram and how to read the trees."""
    depths = sorted(stats["divergence"])
    median = depths[len(depths) // 2] if depths else 0
    items = [
        (
            _pct(stats["branch_tokens"], stats["tokens"]),
            f"of response tokens are branch tokens, where TEMPO's TD term applies "
            f"({stats['branch_tokens']:,} of {stats['tokens']:,}; {stats['td_nonzero']:,} with TD ≠ 0)",
        ),
        (
            f"{stats['shared_groups']:,} / {stats['multi_groups']:,}",
            f"groups share a prefix: at least two of their responses start with the same token "
            f"({_pct(stats['shared_groups'], stats['multi_groups'])})",
        ),
        (f"{median:,}", "tokens: median first-divergence depth, how far a response shares a path with another"),
        (f"{stats['groups']:,}", f"groups ({stats['responses']:,} responses) in the input; {drawn} drawn below"),
    ]
    cells = "".join(f'<div class="stat"><b>{_esc(v)}</b><span>{_esc(t)}</span></div>' for v, t in items)
    hist = (
        '<div class="stat hist"><span>first-divergence depth, tokens (responses of groups of ≥ 2)</span>'
        + _histogram_svg(stats["histogram"])
        + "</div>"
    )
    blue, red, grey = _mix(POSITIVE, 1), _mix(NEGATIVE, 1), _mix(NEUTRAL, 0)
    legend = (
        '<div class="legend"><b>How to read a tree.</b> One tree per prompt. '
        "<b>Circle</b>: the number of responses through a prefix; below it V, their mean score. "
        "<b>Edge</b>: a run of tokens that no response leaves (long text elided in the middle; hover for all of "
        "it, click to pin). At a branch point the edge's <b>bold</b> first token is the branch token, coloured by "
        "TEMPO's TD credit V(after) − V(before):"
        f'<i style="background:{blue}"></i>positive<i style="background:{red}"></i>negative '
        "(thicker and darker: larger relative to the group's score range)"
        f'<i style="background:{grey};height:2px"></i>no branch, no TD; dashed: the branch token is not trained on '
        "(response_mask 0, e.g. tool output), so it gets no credit. "
        "<b>Leaf</b>: score r and response number.</div>"
    )
    return f'<header><h1>{_esc(title)}</h1><div class="stats">{cells}{hist}</div>{legend}</header>'


def _group_section(record: dict, tokenizer: Any) -> str:
    responses = record["responses"]
    scores = [r["score"] for r in responses]
    branch_tokens = sum(len(r["branches"]) for r in responses)
    lcp = pairwise_lcp([r["ids"] for r in responses])
    first_branch = int(lcp.min()) if len(responses) > 1 else None
    meta = (
        f"step {record['step']} · {len(responses)} responses · mean score {_fmt(sum(scores) / len(scores))} · "
        f"lengths {min(r['length'] for r in responses):,}–{max(r['length'] for r in responses):,} tokens · "
        + (f"all share the first {first_branch:,} tokens · " if first_branch else "")
        + f"{branch_tokens} branch tokens"
    )
    prompt = record.get("prompt")
    prompt_html = (
        f"<details><summary>prompt ({len(prompt):,} characters)</summary><pre>{_esc(prompt)}</pre></details>"
        if prompt
        else ""
    )
    uid = str(record["uid"])
    return (
        f'<section class="group" id="uid-{_esc(uid)}" data-uid="{_esc(uid)}" data-step="{record["step"]}">'
        f'<h2>uid {_esc(uid)}</h2><div class="meta">{_esc(meta)}</div>{prompt_html}'
        f'<div class="scroll">{_svg_group(record, tokenizer)}</div></section>'
    )


def render_html(
    records: list[dict],
    *,
    tokenizer: Any = None,
    title: str = "TEMPO prefix trees",
    max_groups: int | None = None,
) -> str:
    """Render groups as one self-contained HTML page (inline SVG, inline CSS and a few lines of JS).

    Args:
        records: ``tempo-tree/1`` records (from :func:`tempo_verl.trees.dump.load_tree_input` or
            :func:`tempo_verl.trees.dump.group_records`).
        tokenizer: a Hugging Face tokenizer to decode token ids into text (ids are shown otherwise).
        title: the page title.
        max_groups: draw only the first this many groups; the summary header covers all ``records``.

    Returns:
        The HTML page.
    """
    drawn = records if max_groups is None else records[:max_groups]
    sections = []
    for record in drawn:
        try:
            sections.append(_group_section(record, tokenizer))
        except TreeInputError:
            raise
        except Exception as err:
            where = record.get("source", f"uid {record.get('uid')}")
            raise TreeInputError(f"{where}: cannot draw this group: {type(err).__name__}: {err}") from None
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"{_header(title, summary_stats(records), len(drawn))}"
        + "".join(sections)
        + f'<div id="tip"></div><script>{_JS}</script></body></html>\n'
    )


# ----------------------------------------------------------------------------------------------
# What `tempo-verl tree` does
# ----------------------------------------------------------------------------------------------


def _load_tokenizer(name: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as err:  # pragma: no cover - transformers comes with the verl extra
        raise TreeInputError(f"--tokenizer {name}: transformers is not installed ({err})") from None
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TreeInputError(f"--tokenizer {name}: cannot load a tokenizer ({reason})") from None


def write_tree_page(
    input_path: str | Path,
    out: str | Path,
    *,
    tokenizer: str | None = None,
    groups: int = 8,
    uids: Sequence[str] = (),
    step: int | None = None,
) -> tuple[Path, int, int, str]:
    """Load an input, pick groups, render and write the page.

    A directory holds one file per step: the latest step is drawn unless ``step`` names another.

    Returns:
        ``(out path, groups drawn, groups loaded, a one-line note on what was read)``.

    Raises:
        TreeInputError: a missing or bad input, an unknown uid or step, an unloadable tokenizer, an
            unwritable output; the message is one line.
    """
    files = input_files(input_path)
    source = Path(input_path)
    if source.is_dir():
        steps = sorted({s for s, _ in files if s is not None})
        if step is not None:
            files = [(s, f) for s, f in files if s == step]
            if not files:
                raise TreeInputError(f"{source}: no file for step {step} (steps here: {_short_list(steps)})")
        elif steps:
            files = [(s, f) for s, f in files if s == steps[-1]]
    tok = _load_tokenizer(tokenizer) if tokenizer else None
    records: list[dict] = []
    for _, f in files:
        records.extend(load_tree_input(f, tokenizer=tok))
    if step is not None and not source.is_dir():
        records = [r for r in records if r["step"] == step]
        if not records:
            raise TreeInputError(f"{source}: no group of step {step}")
    if uids:
        wanted = {str(u) for u in uids}
        found = [r for r in records if str(r["uid"]) in wanted]
        missing = wanted - {str(r["uid"]) for r in found}
        if missing:
            raise TreeInputError(
                f"{files[0][1]}: uid {sorted(missing)[0]!r} not found (uids here: "
                f"{_short_list([r['uid'] for r in records])})"
            )
        records = found
    names = ", ".join(f.name for _, f in files)
    title = f"TEMPO prefix trees · {names}"
    page = render_html(records, tokenizer=tok, title=title, max_groups=groups)
    out_path = Path(out)
    try:
        if out_path.parent and not out_path.parent.exists():
            out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise TreeInputError(f"{out_path}: cannot write the page ({err.strerror or err})") from None
    drawn = min(len(records), groups)
    return out_path, drawn, len(records), names


def _short_list(items: Sequence[Any], limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "") if items else "none"
