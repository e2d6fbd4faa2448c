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
