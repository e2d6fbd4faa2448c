"""The composition-safe attention gap: strata of task x family x k, length-normalised mass, paired items."""
import numpy as np
import pytest

from sustain.eval.attention.aggregate import summarise_attention
from sustain.eval.attention.strata import composition_safe_gaps, paired_gap, stratified_gap


def gen(task, k, success, share, item, span=4, context=100, steps=6, rng=None):
    """One attention record whose share of context is `share` (+ noise); raw mass = share * span / context."""
    noise = rng.normal(0, 0.02, steps) if rng is not None else np.zeros(steps)
    shares = np.clip(share + noise, 0.01, None)
    raw = shares * span / context
    return {"task": task, "family": "hard", "k": k, "item_id": str(item), "condition": f"hard:k{k}",
            "success": success, "per_step": raw.tolist(), "share_norm": shares.tolist(),
            "per_token_norm": (raw / span).tolist()}


def confounded(rng):
    """No difference inside any stratum; failures sit mostly where spans are long (k=3, raw mass high)."""
    records = []
    for i in range(40):  # k=1: short span, 10% fail
        records.append(gen("gsm8k", 1, i % 10 != 0, 1.0, f"a{i}", span=4, rng=rng))
    for i in range(40):  # k=3: span 3x longer, 70% fail
        records.append(gen("gsm8k", 3, i % 10 < 3, 1.0, f"b{i}", span=12, rng=rng))
    return records


def test_composition_alone_makes_a_pooled_raw_gap_but_no_stratified_one():
    records = confounded(np.random.default_rng(0))
    pooled = summarise_attention(records)["groups"]["all"]["gap"]
    assert pooled["low"] > 0  # the pooled raw number "finds" more attention on failures
    for metric in ("share_norm", "per_token_norm"):
        gap = stratified_gap(records, metric)
        assert gap["n_strata"] == 2 and gap["n"] == 80 and gap["excluded"]["generations"] == 0
        level = np.mean([np.mean(r[metric]) for r in records])
        assert abs(gap["value"]) < 0.02 * level, gap  # no gap inside the strata, whatever the noise
        assert gap["hi"] - gap["lo"] < 0.05 * level


def test_stratified_gap_finds_a_real_within_stratum_difference_and_states_weights():
    rng = np.random.default_rng(1)
    records = [gen("hotpotqa", 2, i % 2 == 0, 1.0 if i % 2 == 0 else 1.5, i, context=1000, rng=rng) for i in range(30)]
    records += [gen("gsm8k", 1, i % 3 != 0, 1.0 if i % 3 != 0 else 1.5, f"g{i}", rng=rng) for i in range(30)]
    records.append(gen("gsm8k", 2, False, 9.0, "lonely"))  # a stratum with one outcome: left out, counted
    gap = stratified_gap(records, "share_norm", seed=3)
    assert gap["value"] == pytest.approx(0.5, abs=0.05) and gap["lo"] > 0.4
    assert gap["excluded"] == {"strata": 1, "generations": 1}
    rows = {(r["task"], r["k"]): r for r in gap["strata"]}
    assert rows[("hotpotqa", "2")]["weight"] == pytest.approx(15 * 15 / 30)
    assert rows[("gsm8k", "1")]["weight"] == pytest.approx(10 * 20 / 30)
    assert "f*g/(f+g)" in gap["weights"]
    assert stratified_gap(records, "share_norm", seed=3) == gap  # seeded


def test_no_comparable_stratum_is_undefined_with_a_reason():
    records = [gen("gsm8k", 1, False, 1.0, i) for i in range(3)] + [gen("gsm8k", 2, True, 1.0, 9)]
    gap = stratified_gap(records, "share_norm")
    assert gap["value"] is None and "both failed and solved" in gap["reason"] and gap["n"] == 4


def test_paired_view_uses_items_with_both_outcomes():
    rng = np.random.default_rng(2)
    records = []
    for i in range(12):  # each item: k=1 solved, k=2 failed with more share
        records += [gen("gsm8k", 1, True, 1.0, i, rng=rng), gen("gsm8k", 2, False, 1.3, i, rng=rng)]
    records.append(gen("gsm8k", 1, True, 1.0, "single"))
    paired = paired_gap(records, "share_norm")
    assert paired["n_items"] == 12 and paired["n_items_one_outcome"] == 1
    assert paired["value"] == pytest.approx(0.3, abs=0.03) and paired["lo"] > 0.2
    both = composition_safe_gaps(records)
    assert set(both) == {"stratified", "paired"} and set(both["paired"]) == {"share_norm", "per_token_norm"}
