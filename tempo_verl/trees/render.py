"""Draw TEMPO's prefix trees: one self-contained HTML page with inline SVG (no network, no JS library).

Each group becomes a compressed prefix tree (:mod:`tempo_verl.trees.layout`): an edge is a run of
tokens that no response leaves, labelled with their text (or token ids); a node shows how many
responses pass through it and its prefix value ``V``; the edge that leaves a branch point starts
with the branch token and is coloured by the TD credit ``V(s_{t+1}) - V(s_t)`` that TEMPO gave it
(blue: positive, red: negative, strength: size relative to the group's score range); leaves show
the scores. Long edges are elided in the middle; the full text shows on hover (click pins it).

Input: records in the ``tempo-tree/1`` format (:mod:`tempo_verl.trees.format`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tempo_verl.trees.format import TreeInputError, pairwise_lcp
from tempo_verl.trees.layout import fmt
from tempo_verl.trees.svg import NEGATIVE, NEUTRAL, POSITIVE, esc, mix, svg_group

__all__ = ["render_html", "summary_stats"]


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
        lcp.fill_diagonal_(-1)
        deepest = lcp.max(dim=1).values.tolist()
        divergence.extend(int(d) for d in deepest)
        stats["shared_groups"] += int(max(deepest) >= 1)
    stats["divergence"] = divergence
    stats["histogram"] = [
        (_bucket_label(lo, hi), sum(1 for d in divergence if d >= lo and (hi is None or d <= hi)))
        for lo, hi in _BUCKETS
    ]
    return stats


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
            f'<g class="bucket" data-label="{esc(label)}" data-count="{count}">'
            f'<rect x="{x}" y="{14 + h - bh}" width="{bar_w}" height="{bh}" fill="#5b8db8"/>'
            f'<text x="{x + bar_w / 2}" y="{12 + h - bh}" text-anchor="middle">{count}</text>'
            f'<text x="{x + bar_w / 2}" y="{h + 28}" text-anchor="middle">{esc(label)}</text></g>'
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
    cells = "".join(f'<div class="stat"><b>{esc(v)}</b><span>{esc(t)}</span></div>' for v, t in items)
    hist = (
        '<div class="stat hist"><span>first-divergence depth, tokens (responses of groups of ≥ 2)</span>'
        + _histogram_svg(stats["histogram"])
        + "</div>"
    )
    blue, red, grey = mix(POSITIVE, 1), mix(NEGATIVE, 1), mix(NEUTRAL, 0)
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
    return f'<header><h1>{esc(title)}</h1><div class="stats">{cells}{hist}</div>{legend}</header>'


def _group_section(record: dict, tokenizer: Any, anchor: str) -> str:
    """One group: its uid, step, source file, numbers, prompt and tree (``anchor``: the section's HTML id)."""
    responses = record["responses"]
    scores = [r["score"] for r in responses]
    branch_tokens = sum(len(r["branches"]) for r in responses)
    lcp = pairwise_lcp([r["ids"] for r in responses])
    first_branch = int(lcp.min()) if len(responses) > 1 else None
    meta = (
        f"step {record['step']} · {len(responses)} responses · mean score {fmt(sum(scores) / len(scores))} · "
        f"lengths {min(r['length'] for r in responses):,}–{max(r['length'] for r in responses):,} tokens · "
        + (f"all share the first {first_branch:,} tokens · " if first_branch else "")
        + f"{branch_tokens} branch tokens"
        + (f" · from {Path(record['source']).name}" if record.get("source") else "")
    )
    prompt = record.get("prompt")
    prompt_html = (
        f"<details><summary>prompt ({len(prompt):,} characters)</summary><pre>{esc(prompt)}</pre></details>"
        if prompt
        else ""
    )
    uid = str(record["uid"])
    return (
        f'<section class="group" id="{esc(anchor)}" data-uid="{esc(uid)}" data-step="{record["step"]}">'
        f'<h2>uid {esc(uid)}</h2><div class="meta">{esc(meta)}</div>{prompt_html}'
        f'<div class="scroll">{svg_group(record, tokenizer)}</div></section>'
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
        records: ``tempo-tree/1`` records (from :func:`tempo_verl.trees.readers.load_tree_input` or
            :func:`tempo_verl.trees.records.group_records`).
        tokenizer: a Hugging Face tokenizer to decode token ids into text (ids are shown otherwise).
        title: the page title.
        max_groups: draw only the first this many groups; the summary header covers all ``records``.

    Returns:
        The HTML page.
    """
    drawn = records if max_groups is None else records[:max_groups]
    sections = []
    anchors: set[str] = set()
    for k, record in enumerate(drawn):
        anchor = f"uid-{record['uid']}"
        anchor = anchor if anchor not in anchors else f"{anchor}-{k}"  # one uid in several steps or runs
        anchors.add(anchor)
        try:
            sections.append(_group_section(record, tokenizer, anchor))
        except TreeInputError:
            raise
        except Exception as err:
            where = record.get("source", f"uid {record.get('uid')}")
            raise TreeInputError(f"{where}: cannot draw this group: {type(err).__name__}: {err}") from None
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"{_header(title, summary_stats(records), len(drawn))}"
        + "".join(sections)
        + f'<div id="tip"></div><script>{_JS}</script></body></html>\n'
    )
