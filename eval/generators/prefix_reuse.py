"""Prefix reuse: prompts that share a long token prefix are prefilled once per prefix.

The constrained stage queues, per solved item, a control re-run and k = 1..k_max constrained prompts:
the same question with different constraint text appended, so they share every token up to the
constraint. On HotpotQA that is ~1,300 tokens of paragraphs per prompt, and prefill dominates on
CPU. A batch that holds such a group runs each distinct prefix once (one padded forward), copies its
KV cache to the group's rows, and decodes every row together from there:

    [pad.. prefix_g][pad.. suffix_i]  with the attention mask zero on both pads

Position ids come from the attention mask, so each suffix continues at its prefix's length and the
greedy output equals the full-prompt one up to float noise. benchmarks/bench_prefix_reuse.py measures
it; the minimum shared length keeps short prompts (GSM8K), where nothing is saved, on the plain path.
"""
from __future__ import annotations

from dataclasses import dataclass


def shared_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def order_by_prefix(rows: list[list[int]], min_tokens: int) -> tuple[list[int], list[int]]:
    """Indices of `rows` in generation order, and a group number per index: rows that share at least
    `min_tokens` leading tokens are adjacent and share a group number; groups go longest first (the
    plain path's length sort: batches of similar length pad less)."""
    by_tokens = sorted(range(len(rows)), key=lambda i: rows[i])  # rows sharing a prefix become neighbours
    near = [shared_length(rows[i], rows[j]) for i, j in zip(by_tokens, by_tokens[1:])]
    groups, start = [], 0
    for end in range(1, len(by_tokens) + 1):  # runs whose neighbours share >= min_tokens, each split at its best cuts
        if end == len(by_tokens) or near[end - 1] < min_tokens:
            groups += _cheapest_split(rows, by_tokens[start:end], near[start:end - 1])
            start = end
    groups.sort(key=lambda g: (-max(len(rows[i]) for i in g), g[0]))
    order = [i for g in groups for i in g]
    label = {i: n for n, g in enumerate(groups) for i in g}
    return order, [label[i] for i in order]


def _cheapest_split(rows: list[list[int]], group: list[int], near: list[int]) -> list[list[int]]:
    """Sorted rows with their neighbours' overlaps `near`: keep them as one group, or cut where the
    overlap is smallest (items that share only a preamble) when that prefills fewer tokens. The
    recursion goes one level per distinct overlap, not one per row."""
    def cost(lo: int, hi: int) -> int:  # prefill tokens of group[lo:hi] as one group
        if hi - lo == 1:
            return len(rows[group[lo]])
        shared = min(near[lo:hi - 1])
        return shared + sum(len(rows[i]) - shared for i in group[lo:hi])

    def best(lo: int, hi: int) -> tuple[int, list[tuple[int, int]]]:
        if hi - lo == 1:
            return cost(lo, hi), [(lo, hi)]
        shared = min(near[lo:hi - 1])  # cut at every neighbour pair that shares only this much
        cuts = [lo] + [j + 1 for j in range(lo, hi - 1) if near[j] == shared] + [hi]
        parts = [best(a, b) for a, b in zip(cuts, cuts[1:])]
        split, whole = sum(c for c, _ in parts), cost(lo, hi)
        return (whole, [(lo, hi)]) if whole <= split else (split, [span for _, spans in parts for span in spans])

    return [group[lo:hi] for lo, hi in best(0, len(group))[1]]


@dataclass
class PrefixLayout:
    """One batch laid out for prefix reuse (lists of token ids and 0/1 masks, ready for tensors)."""

    prefix_ids: list[list[int]]  # one row per group, left-padded
    prefix_mask: list[list[int]]
    row_group: list[int]  # for each batch row, its group's row in prefix_ids
    input_ids: list[list[int]]  # per batch row: its group's padded prefix, then its left-padded suffix
    attention_mask: list[list[int]]


def layout(rows: list[list[int]], groups: list[int], pad_id: int) -> PrefixLayout:
    """`rows`: one batch's prompts as token ids; `groups`: a group label per row (equal labels share a
    prefix). Every row keeps at least its last token outside the prefix: generation starts from it."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    prefix_len = {}
    for g, idx in members.items():
        first = rows[idx[0]]
        cut = min(len(rows[i]) for i in idx) - 1
        prefix_len[g] = min([cut] + [shared_length(first, rows[i]) for i in idx[1:]])
    # a row alone in its group is split anywhere: at the shared prefixes' width, so it widens neither part
    shared_width = max((n for g, n in prefix_len.items() if len(members[g]) > 1), default=0)
    for g, idx in members.items():
        if len(idx) == 1:
            prefix_len[g] = min(len(rows[idx[0]]) - 1, shared_width)
    slot = {g: n for n, g in enumerate(members)}  # a group's row in prefix_ids
    width = max(prefix_len.values())
    suffix_width = max(len(r) - prefix_len[g] for r, g in zip(rows, groups))

    def left_pad(ids: list[int], n: int) -> tuple[list[int], list[int]]:
        return [pad_id] * (n - len(ids)) + ids, [0] * (n - len(ids)) + [1] * len(ids)

    prefix_ids, prefix_mask = map(list, zip(*(left_pad(rows[idx[0]][:prefix_len[g]], width) for g, idx in members.items())))
    input_ids, attention_mask = [], []
    for r, g in zip(rows, groups):
        tail, tail_mask = left_pad(r[prefix_len[g]:], suffix_width)
        input_ids.append(prefix_ids[slot[g]] + tail)
        attention_mask.append(prefix_mask[slot[g]] + tail_mask)
    return PrefixLayout(prefix_ids, prefix_mask, [slot[g] for g in groups], input_ids, attention_mask)


def reuses(groups: list[int]) -> bool:
    """A batch can gain from the layout only if some group has two or more rows in it."""
    return len(set(groups)) < len(groups)


def saves_prefill(plan: PrefixLayout, rows: list[list[int]]) -> bool:
    """The layout's prefill (each prefix row, then every row's padded suffix) is smaller than the plain
    left-padded batch's (every row at the longest prompt's length)."""
    suffix_width = len(plan.input_ids[0]) - len(plan.prefix_ids[0])
    reuse = len(plan.prefix_ids) * len(plan.prefix_ids[0]) + len(rows) * suffix_width
    return reuse < len(rows) * max(map(len, rows))
