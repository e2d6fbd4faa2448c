import math

from sustain.eval.summary import summarise
from sustain.eval.scoring import mcnemar, proportion, wilson


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


def _base(i, ok, task="arith"):
    return {"task": task, "item_id": str(i), "condition": "base", "success": ok}


def _run(i, ok, k=1, cat="length", followed=True, family="hard", task="arith"):
    return {"task": task, "item_id": str(i), "condition": f"{family}:k{k}", "family": family, "k": k,
            "constraints": [{"category": cat}] * k, "success": ok, "followed_all": followed,
            "finish_reason": "stop", "answer": "5" if not ok else "7", "gold": "7",
            "output": f"The answer is {5 if not ok else 7}."}


def _control(i, ok, task="arith"):
    return {"task": task, "item_id": str(i), "condition": "control", "success": ok}


def _extract(i, candidates, family="hard", task="arith"):
    return {"task": task, "item_id": str(i), "condition": f"extract:{family}", "family": family,
            "candidates": candidates}


KEPT = {"constraint": {"id": "c", "family": "hard", "category": "length", "text": "t",
                       "instruction_id": "length_constraints:number_words", "kwargs": {}},
        "self_evident": True, "checked_by": "ifeval"}
REJECTED = dict(KEPT, self_evident=False)
KEPT_SOFT = {"constraint": {"id": "s", "family": "soft", "category": "style", "text": "Be brief."},
             "self_evident": True, "checked_by": "llm"}
LEAK = dict(KEPT_SOFT, self_evident=None, rejected="leak", leak=["gold answer"])
TIMEOUT = {"constraint": None, "self_evident": None, "checked_by": "llm", "error": "timeout"}


def test_headline_is_k1_per_task_and_family_with_coverage_and_control():
    base = [_base(i, True) for i in range(6)] + [_base(6, False)] + [_base(0, True, task="gsm8k")]
    runs = [_run(0, True), _run(1, False, cat="keyword"), _run(2, True), _run(3, True),
            _run(0, False, k=2), _run(1, False, k=2), _run(2, False, k=2),  # k=2 never enters the headline
            _run(0, False, family="soft", cat="style"), _run(6, True)]  # item 6 was not solved at baseline
    control = [_control(0, True), _control(1, True), _control(2, True), _control(3, False)]
    extracted = [_extract(4, [REJECTED]), _extract(5, [TIMEOUT], family="soft"), _extract(4, [KEPT_SOFT], family="soft"),
                 _extract(3, [LEAK], family="soft"), _extract(2, [dict(KEPT_SOFT, self_evident=None, error="timeout")], family="soft")]
    s = summarise(base, runs, extracted=extracted, control=control, families=["hard", "soft"], k_max=2)
    hard = s["sustain"]["headline"]["arith"]["hard"]
    assert (hard["value"], hard["n"], hard["successes"], hard["interval"]) == (0.75, 4, 3, "wilson")
    assert (hard["lo"], hard["hi"]) == wilson(3, 4)
    cov = hard["coverage"]
    assert (cov["with_constraint"], cov["solved"], cov["value"]) == (4, 6, 4 / 6)
    assert cov["excluded"] == {"no self-evident candidate": 1, "not extracted yet": 1}
    assert hard["control"]["value"] == 0.75 and hard["control"]["n"] == 4
    # item 1 lost under its constraint, item 3 lost without one: discordant 1 vs 1
    vs = hard["vs_control"]
    assert (vs["n_pairs"], vs["only_a"], vs["only_b"], vs["p_value"]) == (4, 1, 1, 1.0)
    soft = s["sustain"]["headline"]["arith"]["soft"]
    assert soft["value"] == 0.0 and soft["n"] == 1
    assert soft["coverage"]["excluded"] == {"constrained run missing": 1, "extraction failed (timeout)": 1,
                                            "every candidate rejected (leak check)": 1,
                                            "no self-evidence verdict (timeout)": 1, "not extracted yet": 1}
    assert soft["control"]["n"] == 1  # the control over the same items as the cell
    gsm = s["sustain"]["headline"]["gsm8k"]["hard"]
    assert gsm["value"] is None and gsm["reason"] == "no solved item got a self-evident hard constraint"
    assert gsm["coverage"]["excluded"] == {"not extracted yet": 1}
    assert "overall" not in s["sustain"] and "by_family" not in s["sustain"] and "by_k" not in s["sustain"]
    assert s["sustain"]["by_category"]["arith"]["length"]["value"] == 1.0
    assert s["sustain"]["by_category"]["arith"]["keyword"]["value"] == 0.0
    assert s["failures"]["reasoning"] == 5 and s["constrained_runs"] == 8


def test_scale_uses_one_item_set_for_every_k():
    base = [_base(i, True) for i in range(4)]
    runs = [_run(0, True), _run(1, True), _run(2, False), _run(0, True, k=2), _run(2, False, k=2)]
    scale = summarise(base, runs, k_max=2)["sustain"]["scale"]["arith"]["hard"]
    assert scale["coverage"]["with_constraint"] == 2  # items 0 and 2 have both k; item 1 only k=1
    assert scale["coverage"]["excluded"] == {"fewer than 2 compatible self-evident constraints": 1,
                                             "no k=1 constraint": 1}
    assert scale["by_k"]["k1"]["value"] == 0.5 and scale["by_k"]["k1"]["n"] == 2
    assert scale["by_k"]["k2"]["value"] == 0.5 and scale["by_k"]["k2"]["n"] == 2


def test_macro_average_weighs_each_task_the_same_and_says_so():
    base = [_base(i, True) for i in range(10)] + [_base(0, True, task="gsm8k")]
    runs = [_run(i, True) for i in range(10)] + [_run(0, False, task="gsm8k")]
    macro = summarise(base, runs)["sustain"]["macro"]["hard"]
    assert macro["value"] == 0.5 and macro["n"] == 11 and macro["groups"] == ["arith", "gsm8k"]
    assert macro["label"].startswith("macro average over tasks")
    assert macro["lo"] <= 0.5 <= macro["hi"]


def test_summary_with_nothing_solved_is_undefined():
    s = summarise([_base(0, False)], [])
    cell = s["sustain"]["headline"]["arith"]["hard"]
    assert cell["value"] is None and cell["reason"] == "no items solved at baseline"
    assert cell["coverage"]["value"] is None and cell["control"]["value"] is None
    assert s["sustain"]["macro"]["hard"]["value"] is None


def test_mcnemar_counts_discordant_pairs_exactly():
    a = {("t", str(i)): i < 8 for i in range(10)}
    b = {("t", str(i)): i < 2 for i in range(10)}
    m = mcnemar(a, b)
    assert (m["only_a"], m["only_b"], m["both"], m["neither"]) == (6, 0, 2, 2)
    assert math.isclose(m["p_value"], 2 * 0.5**6)  # exact two-sided binomial on 6 discordant pairs
