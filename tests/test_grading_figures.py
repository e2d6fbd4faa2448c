"""summary.json's grading figures: truncation rates and accuracy per lm-eval-named filter."""
from sustain.eval.grading_figures import accuracy_by_filter, truncation, truncation_line
from sustain.eval.summary import summarise


def rec(task, item, cut, condition="base", filters=None, success=False):
    detail = {"filters": filters} if filters else {}
    return {"task": task, "item_id": item, "condition": condition, "finish_reason": "length" if cut else "stop",
            "success": success, "detail": detail}


def test_truncation_rates_at_baseline_and_under_constraints_with_n_and_interval():
    base = [rec("gsm8k", str(i), cut=i < 3) for i in range(10)] + [rec("hotpotqa", "q", cut=False)]
    constrained = [rec("gsm8k", "1", cut=True, condition="hard:k1")]
    t = truncation(base, constrained)
    assert (t["baseline"]["successes"], t["baseline"]["n"]) == (3, 11) and t["baseline"]["lo"] < 3 / 11 < t["baseline"]["hi"]
    assert t["baseline_by_task"]["gsm8k"]["value"] == 0.3 and t["baseline_by_task"]["hotpotqa"]["value"] == 0.0
    assert t["constrained"]["value"] == 1.0 and "raise max_new_tokens" in t["warning"]
    assert truncation_line(t).startswith("truncated    baseline 0.273 [") and "warning: 27.3% of baseline" in truncation_line(t)
    quiet = truncation([rec("gsm8k", "1", cut=False)], [])
    assert truncation_line(quiet).endswith("constrained undefined (no constrained generations)")
    assert "warning" not in quiet and quiet["constrained"]["value"] is None and quiet["constrained"]["reason"]


def test_accuracy_by_filter_counts_each_filter_and_skips_tasks_without_filters():
    base = [rec("gsm8k", "1", False, filters={"strict-match": True, "flexible-extract": True}),
            rec("gsm8k", "2", False, filters={"strict-match": False, "flexible-extract": True}),
            rec("hotpotqa", "q", False)]
    figures = accuracy_by_filter(base)
    assert set(figures) == {"gsm8k"}
    assert figures["gsm8k"]["strict-match"]["value"] == 0.5 and figures["gsm8k"]["flexible-extract"]["value"] == 1.0


def test_the_summary_carries_both():
    summary = summarise([rec("gsm8k", "1", True, filters={"strict-match": False, "flexible-extract": False})], [])
    assert summary["truncation"]["baseline"]["value"] == 1.0
    assert summary["accuracy_by_filter"]["gsm8k"]["strict-match"]["n"] == 1


def test_the_console_prints_the_truncation_line(tmp_path, capsys):
    import json

    from sustain.eval.report.console import print_summary
    from test_reproduce import run_folder

    out = run_folder(tmp_path)
    print_summary(json.loads((out / "summary.json").read_text()), str(out))
    assert "truncated    baseline 0.000 [0.000, 0.215] n=14; constrained 0.000" in capsys.readouterr().out
