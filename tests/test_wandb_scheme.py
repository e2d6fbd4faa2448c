"""One W&B scheme: a training run (the callback logging each checkpoint's summary) and a `sustain
report` run of the same checkpoints hold the same keys, on the same step axis, with intervals."""
from __future__ import annotations

import pytest

from test_report import write_eval
from wandb_offline import history, run_dirs

AXIS = "sustain/checkpoint_step"


def rows_by_step(folder) -> dict[int, dict]:
    """checkpoint step -> the sustain/* keys of its row (W&B's own _step, _runtime, ... left out)."""
    return {r[AXIS]: {k: v for k, v in r.items() if not k.startswith("_")}
            for run in run_dirs(folder) for r in history(run) if AXIS in r}


def test_training_and_report_runs_share_keys_axis_and_intervals(tmp_path, monkeypatch):
    import wandb

    from sustain.eval.report.build import build_report
    from sustain.train.callbacks import log_finished

    out = tmp_path / "grpo"
    for step, keep in ((100, "middling"), (200, "fragile")):
        write_eval(out / "eval" / f"checkpoint-{step}", f"grpo-{step}", keep)
    for name, value in dict(WANDB_MODE="offline", WANDB_SILENT="true").items():
        monkeypatch.setenv(name, value)

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "train_wb"))
    run = wandb.init(project="tests", dir=str(tmp_path / "train_wb"), mode="offline")
    try:
        assert log_finished(out, run) == [100, 200]
    finally:
        run.finish()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "report_wb"))
    build_report([out], tmp_path / "report", wandb_mode="offline", project="tests", group="g")

    training = rows_by_step(tmp_path / "train_wb")
    report = rows_by_step(tmp_path / "report_wb")
    assert sorted(training) == sorted(report) == [100, 200]
    for step in (100, 200):
        trained = {k: v for k, v in training[step].items() if k not in ("train/global_step", "sustain/failure_examples")}
        assert set(trained) == set(report[step])  # same keys (training adds only train/global_step, a table)
        assert trained == pytest.approx(report[step])
        assert training[step]["train/global_step"] == step
        scores = [k for k in trained if k != AXIS and not k.endswith(("_lo", "_hi", "_n", "_count"))]
        assert "sustain/accuracy" in scores  # the SustainScore is per task and family, never pooled
        assert any(k.startswith("sustain/score/") for k in scores) and "sustain/score" not in scores
        for k in scores:  # every score carries its n, and an interval when n > 0
            assert f"{k}_n" in trained
            assert trained[f"{k}_n"] == 0 or trained[f"{k}_lo"] - 1e-9 <= trained[k] <= trained[f"{k}_hi"] + 1e-9
