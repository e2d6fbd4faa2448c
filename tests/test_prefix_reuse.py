"""Prefix reuse's batch layout (the model-level check is in test_generators.py)."""
from sustain.eval.generators.prefix_reuse import layout, order_by_prefix, reuses

PAD = 0


def test_rows_sharing_a_long_prefix_are_grouped_and_adjacent_longest_group_first():
    q1, q2 = [5] * 6, [7] * 9
    rows = [q1 + [1], [3, 4], q2 + [2, 2], q1 + [8, 8], q2, [3, 4, 5]]
    order, groups = order_by_prefix(rows, min_tokens=6)
    assert order == [4, 2, 0, 3, 5, 1]
    assert groups[:2] == [groups[0]] * 2 and groups[2:4] == [groups[2]] * 2  # q2's rows, then q1's
    assert len(set(groups)) == 4 and reuses(groups)  # [3, 4] and [3, 4, 5] share 2 < 6 tokens: apart
    assert not reuses(order_by_prefix(rows, min_tokens=100)[1])


def test_layout_pads_before_each_prefix_and_before_each_suffix():
    rows = [[9, 9, 9, 1], [9, 9, 9, 2, 3], [4, 4]]
    plan = layout(rows, groups=[0, 0, 1], pad_id=PAD)
    assert plan.prefix_ids == [[9, 9, 9], [PAD, PAD, 4]]  # the lone row keeps its last token out
    assert plan.prefix_mask == [[1, 1, 1], [0, 0, 1]]
    assert plan.row_group == [0, 0, 1]
    assert plan.input_ids == [[9, 9, 9, PAD, 1], [9, 9, 9, 2, 3], [PAD, PAD, 4, PAD, 4]]
    assert plan.attention_mask == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0, 0, 1, 0, 1]]
    # every row's unmasked tokens are exactly its prompt
    for row, ids, mask in zip(rows, plan.input_ids, plan.attention_mask):
        assert [t for t, m in zip(ids, mask) if m] == row


def test_identical_prompts_still_leave_a_token_to_start_from():
    plan = layout([[6, 6, 6], [6, 6, 6]], groups=[0, 0], pad_id=PAD)
    assert plan.prefix_ids == [[6, 6]] and plan.input_ids == [[6, 6, 6], [6, 6, 6]]


def test_items_that_share_only_a_preamble_are_split_into_one_group_per_item():
    preamble = [1] * 300
    item_a, item_b = preamble + [2] * 500, preamble + [3] * 500
    rows = [item_a, item_a + [7], item_a + [8, 8], item_b, item_b + [7], item_b + [8, 8]]
    order, groups = order_by_prefix(rows, min_tokens=256)
    assert len(set(groups)) == 2 and {frozenset(order[:3]), frozenset(order[3:])} == {frozenset({0, 1, 2}), frozenset({3, 4, 5})}
    # prompts that share only the preamble, one each: one group, the preamble prefilled once
    assert len(set(order_by_prefix([item_a, item_b, preamble + [4] * 400], min_tokens=256)[1])) == 1


def test_a_lone_row_is_cut_at_the_shared_prefixes_width_and_reuse_is_refused_when_it_costs_more():
    from sustain.eval.generators.prefix_reuse import saves_prefill

    shared = [5] * 300
    rows = [shared + [1] * 10, shared + [2] * 12, [9] * 1500]
    plan = layout(rows, groups=[0, 0, 1], pad_id=PAD)
    assert len(plan.prefix_ids[0]) == 300 and len(plan.input_ids[2]) == 1500  # not 1,499 + 1,200 wide
    assert saves_prefill(plan, rows)  # 2 x 300 + 3 x 1,200 < 3 x 1,500
    # a long prefix beside long suffixes: 2 x 1,000 + 4 x 1,000 > 4 x 1,300, the plain batch is cheaper
    long_head, long_tail = [[6] * 1000 + [1] * 10, [6] * 1000 + [2] * 10], [[7] * 300 + [t] * 1000 for t in (1, 2)]
    assert not saves_prefill(layout(long_head + long_tail, groups=[0, 0, 1, 1], pad_id=PAD), long_head + long_tail)


def test_a_thousand_prompts_behind_one_preamble_group_without_deep_recursion():
    preamble = [1] * 300
    rows = [preamble + [2 + i // 3] * 400 + [i % 3] for i in range(3000)]  # 1,000 items x 3 variants
    _, groups = order_by_prefix(rows, min_tokens=256)
    assert len(set(groups)) == 1000 and all(groups.count(g) == 3 for g in set(groups[:30]))
