import math

from sustain.eval.summary import summarise
from sustain.eval.scoring import proportion, wilson


def test_wilson_matches_known_values():
    lo, hi = wilson(8, 10)
    assert math.isclose(lo, 0.4902, abs_tol=1e-3) and math.isclose(hi, 0.9433, abs_tol=1e-3)
    assert wilson(0, 10)[0] == 0.0 and math.isclose(wilson(10, 10)[1], 1.0)


def test_proportion_switches_to_cluster_bootstrap_for_repeated_items():
    one_each = [{"task": "t", "item_id": str(i), "ok": i % 2 == 0} for i in range(20)]
    p = proportion(one_each, lambda r: r["ok"], "none")
    assert p["interval"] == "wilson" and p["value"] == 0.5 and p["n"] == 20
    two_each = one_each + [dict(r) for r in one_each]
    q = proportion(two_each, lambda r: r["ok"], "none")
    assert q["interval"] == "cluster-bootstrap" and q["n"] == 40 and q["items"] == 20
    # perfectly correlated duplicates carry no extra information: the interval must not shrink much
    assert (q["hi"] - q["lo"]) > 0.8 * (p["hi"] - p["lo"])


def test_undefined_score_has_reason_not_zero():
    p = proportion([], lambda r: True, "no items solved at baseline")
    assert p["value"] is None and p["n"] == 0 and p["reason"] == "no items solved at baseline"


def _base(i, ok):
    return {"task": "arith", "item_id": str(i), "condition": "base", "success": ok}


def _run(i, ok, k=1, cat="length", followed=True):
    return {"task": "arith", "item_id": str(i), "condition": f"hard:k{k}", "family": "hard", "k": k,
            "constraints": [{"category": cat}] * k, "success": ok, "followed_all": followed,
            "finish_reason": "stop", "answer": "5" if not ok else "7", "gold": "7",
            "output": f"The answer is {5 if not ok else 7}."}


def test_summary_counts_only_items_solved_at_baseline():
    base = [_base(0, True), _base(1, True), _base(2, False)]
    runs = [_run(0, True), _run(1, False, cat="keyword"), _run(2, True)]
    s = summarise(base, runs)
    assert s["accuracy"]["value"] == 2 / 3
    assert s["sustain"]["overall"]["value"] == 0.5 and s["sustain"]["overall"]["n"] == 2
    assert s["sustain"]["by_category"]["length"]["value"] == 1.0
    assert s["sustain"]["by_category"]["keyword"]["value"] == 0.0
    assert s["failures"]["reasoning"] == 1


def test_summary_with_nothing_solved_is_undefined():
    s = summarise([_base(0, False)], [])
    assert s["sustain"]["overall"]["value"] is None
    assert s["sustain"]["overall"]["reason"] == "no items solved at baseline"
