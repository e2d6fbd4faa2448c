"""sustain.train.eval_checkpoint: which checkpoint an array task evaluates, what it skips, and that the eval
settings are the recipe's."""
from __future__ import annotations

import json
import shutil

import pytest

from sustain.train import eval_checkpoint
from sustain.train.eval_checkpoint import evaluate_run, main, run_checkpoints

RECIPE = "model_name_or_path: unused\neval:\n  tasks: [arith]\n  limit: 3\n  max_new_tokens: 16\n  seed: 7\n"


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"  # eval keys only, like the training callback's eval_recipe.yaml
    path.write_text(RECIPE)
    return str(path)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    for step in (10, 2, 30):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    (run / "checkpoint-final").mkdir()  # not a step: ignored
    (run / "checkpoint-5").write_text("a file, not a checkpoint")
    return run


@pytest.fixture
def recorded(monkeypatch):
    """run_eval replaced by a recorder that writes a summary, as the pipeline would."""
    calls = []

    def fake_run_eval(cfg):
        calls.append(cfg)
        from pathlib import Path

        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "summary.json").write_text(json.dumps({"model": cfg.model}))
        return {}

    monkeypatch.setattr("sustain.eval.pipeline.run_eval", fake_run_eval)
    return calls


def test_checkpoints_are_in_step_order(run_dir):
    assert [p.name for p in run_checkpoints(run_dir)] == ["checkpoint-2", "checkpoint-10", "checkpoint-30"]


def test_array_index_picks_one_checkpoint_with_the_recipe_settings(run_dir, recipe, recorded):
    assert evaluate_run(run_dir, recipe, index=1) == 1
    (cfg,) = recorded
    assert cfg.model == str(run_dir / "checkpoint-10") and cfg.out == str(run_dir / "eval" / "checkpoint-10")
    assert (cfg.tasks, cfg.limit, cfg.max_new_tokens, cfg.seed) == (["arith"], 3, 16, 7)


def test_done_checkpoints_are_skipped_and_left_untouched(run_dir, recipe, recorded, capsys):
    done = run_dir / "eval" / "checkpoint-2" / "summary.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    before = done.stat().st_mtime_ns
    assert evaluate_run(run_dir, recipe) == 2
    assert [c.model.rsplit("/", 1)[1] for c in recorded] == ["checkpoint-10", "checkpoint-30"]
    assert done.read_text() == "{}" and done.stat().st_mtime_ns == before
    assert "already done" in capsys.readouterr().out
    assert evaluate_run(run_dir, recipe) == 0 and len(recorded) == 2  # a rerun does nothing


def test_an_index_past_the_last_checkpoint_is_not_an_error(run_dir, recipe, recorded, capsys):
    assert evaluate_run(run_dir, recipe, index=3) == 0
    assert not recorded and "nothing to do: index 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--run", "R"], "--run takes --recipe"),
    (["a", "b"], "expected CHECKPOINT OUT RECIPE"),
    (["--run", "/nonexistent/run", "--recipe", "r.yaml"], "does not exist"),
])
def test_usage_mistakes_are_one_line_errors(argv, message, capsys):
    from sustain.train.config import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_recipe_is_named(run_dir, tmp_path, capsys):
    from sustain.train.config import run_main

    with pytest.raises(SystemExit):
        run_main(lambda: main(["--run", str(run_dir), "--recipe", str(tmp_path / "nope.yaml")]))
    assert "recipe not found" in capsys.readouterr().err


def test_base_model_eval_runs_the_real_pipeline_once(tiny_model, recipe, tmp_path, capsys):
    out = tmp_path / "cmp" / "base" / "eval" / "checkpoint-0"
    main([str(tiny_model), str(out), recipe])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["n"] == 3  # the eval block's limit
    written = (out / "summary.json").stat().st_mtime_ns
    main([str(tiny_model), str(out), recipe])
    assert (out / "summary.json").stat().st_mtime_ns == written
    assert "already done" in capsys.readouterr().out


def test_a_copied_checkpoint_is_evaluated_into_the_run_eval_folder(tiny_model, recipe, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "checkpoint-3")
    assert eval_checkpoint.evaluate_run(run, recipe, index=0) == 1
    assert json.loads((run / "eval" / "checkpoint-3" / "summary.json").read_text())["accuracy"]["n"] == 3
