"""The layout of a group's picture: its compressed prefix tree, the rows and columns, the edge labels.

A group's responses become a compressed prefix tree (:func:`build_tree`): runs of tokens no response
leaves are one edge; a node is a prefix where responses part (or end). :func:`place_rows` puts the
leaves one per row, :func:`columns` gives each level its x, :func:`edge_texts` and
:func:`edge_label` make the (elided) labels. Drawing is :mod:`tempo_verl.trees.svg`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from tempo_verl.trees.format import pairwise_lcp, record_values

__all__ = [
    "Texts",
    "TreeEdge",
    "TreeNode",
    "build_tree",
    "clean_text",
    "columns",
    "edge_label",
    "edge_texts",
    "fmt",
    "fmt_td",
    "masked_branch",
    "place_rows",
]

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
    """The compressed prefix tree of one record (children of a node sorted by value, highest first).

    Node values and TD credits are the record's own (stored) prefix values, expanded by the core's
    :func:`~tempo_verl.core.forest.expand_values`; the structure comes from the pairwise common prefixes.
    """
    responses = record["responses"]
    ids = [r["ids"] for r in responses]
    lengths = [r["length"] for r in responses]
    lcp = pairwise_lcp(ids).tolist()
    values = record_values(record).tolist()  # (G, W + 1): V(y_i[:t])

    def build(members: list[int], depth: int) -> TreeNode:
        ends = [i for i in members if lengths[i] == depth]
        cont = [i for i in members if lengths[i] > depth]
        node = TreeNode(depth=depth, members=members, ends=ends, value=values[members[0]][depth])
        by_token: dict[int, list[int]] = {}
        for i in cont:
            by_token.setdefault(ids[i][depth], []).append(i)
        branch = len(by_token) > 1 or (bool(ends) and bool(cont))
        for same in by_token.values():
            rep = same[0]
            end = lengths[rep] if len(same) == 1 else min(lcp[rep][j] for j in same[1:])
            child = build(same, end)
            td = values[rep][depth + 1] - values[rep][depth] if branch else 0.0
            node.edges.append(TreeEdge(child=child, rep=rep, start=depth, end=end, branch=branch, td=td))
        node.edges.sort(key=lambda e: (-e.child.value, e.rep))
        if ends and cont:
            stop = TreeNode(depth=depth, members=ends, ends=ends, value=values[ends[0]][depth])
            node.edges.append(TreeEdge(child=stop, rep=ends[0], start=depth, end=depth, branch=False, td=0.0))
            node.edges[-1].end_marker = True
        return node

    return build(list(range(len(responses))), 0)


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------

_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Text safe for XML: lone surrogates and control characters made visible."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _visible(text: str) -> str:
    """One-line form of a label: newlines and tabs as symbols."""
    return clean_text(text).replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")


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


class Texts:
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


def fmt(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if abs(x) < 1e4 else f"{x:.3g}"


def fmt_td(x: float) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "±") + fmt(abs(x))


# ----------------------------------------------------------------------------------------------
# One group
# ----------------------------------------------------------------------------------------------


def place_rows(root: TreeNode) -> tuple[int, int]:
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


def edge_label(first: str, rest: str, cells: int) -> tuple[str, str, str]:
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


def masked_branch(e: TreeEdge, responses: list[dict]) -> bool:
    """The branch token is inside a ``response_mask`` hole for every response through the edge (no credit given)."""
    return e.branch and all(_holes_in(responses[i], e.start, e.start + 1) for i in e.child.members)


def _edge_info(e: TreeEdge, responses: list[dict]) -> str:
    """The small line under an edge: its tokens, how many are not trained on, its TD."""
    untrained = _holes_in(responses[e.rep], e.start, e.end)
    info = f"{e.end - e.start:,} tok" + (f" ({untrained:,} untrained)" if untrained else "")
    if e.branch:
        info += f" · TD {fmt_td(e.td)}" + (" masked: no credit" if masked_branch(e, responses) else "")
    return info


def edge_texts(root: TreeNode, texts: Texts, responses: list[dict]) -> dict[int, tuple[str, str, str]]:
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


def columns(root: TreeNode, labels: dict[int, tuple[str, str, str]]) -> tuple[list[float], float]:
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
