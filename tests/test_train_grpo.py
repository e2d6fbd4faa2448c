"""GRPO on the tiny model on CPU, and the constraint-augmented paradigm's prompt mining."""
from __future__ import annotations

import json

import pytest

from test_train_sft import assert_evaluated, run_training, sustain_rows, train_env
from wandb_offline import history, run_dirs

GRPO_FLAGS = ["--dataset_size", "64", "--per_device_train_batch_size", "4", "--num_generations", "4",
              "--max_completion_length", "24", "--max_steps", "4", "--save_steps", "2", "--logging_steps", "1",
              "--eval.limit", "8", "--eval.max_new_tokens", "24", "--eval.batch_size", "8"]


def test_grpo_evaluates_every_checkpoint_and_logs_rewards_by_name(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_training("sustain.train.grpo", "grpo.yaml", tiny_model, out, GRPO_FLAGS, train_env(tmp_path))
    assert_evaluated(out, [2, 4])
    assert sorted(sustain_rows(tmp_path / "wandb_dir")) == [2, 4]
    rows = [r for d in run_dirs(tmp_path / "wandb_dir") for r in history(d)]
    reward_steps = [r["train/global_step"] for r in rows if "train/rewards/accuracy/mean" in r]
    assert reward_steps == [1, 2, 3, 4]
    assert all("train/rewards/answer_format/mean" in r for r in rows if "train/rewards/accuracy/mean" in r)


def test_mined_prompts_carry_constraints_the_policys_own_output_satisfies():
    from sustain.eval.constraints import check_hard
    from sustain.eval.tasks import get_task
    from sustain.train.constraint_prompts import mine_rows
    from sustain.train.rewards import constrained_accuracy, parse_constraints

    task = get_task("arith")
    items = task.load("train", 12)
    from sustain.eval.generators import Generation

    outputs = [Generation(it.meta["solution"], "stop", 0) for it in items]  # a policy that solves every item
    outputs[0] = Generation("I do not know.", "stop", 0)  # ... except the first
    outputs[1] = Generation(f"We add and get {items[1].gold}", "length", 0)  # ... and a guess cut at the limit
    rows = mine_rows(task, items, outputs, k=2, seed=0)
    assert rows and all(r["item_id"] not in (items[0].id, items[1].id) for r in rows)
    for row in rows:
        item = next(it for it in items if it.id == row["item_id"])
        chosen = parse_constraints(row["constraints"])
        assert len(chosen) == 2
        assert all(check_hard(c, row["base_output"]) for c in chosen)  # self-evident
        assert row["prompt"][-1]["content"].startswith(item.prompt)
        assert all(c.text in row["prompt"][-1]["content"] for c in chosen)
        assert str(item.gold) not in " ".join(c.text for c in chosen)  # the gold answer does not leak
        completion = [{"role": "assistant", "content": row["base_output"]}]
        assert constrained_accuracy([completion], answer=[row["answer"]], constraints=[row["constraints"]]) == [1.0]


@pytest.mark.slow
def test_grpo_on_constraint_augmented_prompts(tiny_model, tmp_path):
    out = tmp_path / "run"
    env = train_env(tmp_path)
    flags = [f for f in GRPO_FLAGS if f != "--dataset_size" and f != "64"]
    flags += ["--constraint_pool", "32", "--max_steps", "2"]
    run_training("sustain.train.grpo", "grpo_constraints.yaml", tiny_model, out, flags, env)
    cache = out / "constraint_prompts.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert rows and all(json.loads(r["constraints"]) for r in rows)
    logged = [r for d in run_dirs(tmp_path / "wandb_dir") for r in history(d) if "train/rewards/constrained_accuracy/mean" in r]
    assert [r["train/global_step"] for r in logged] == [1, 2]
    assert_evaluated(out, [2])
    # a restart reads the cached prompts instead of generating them again
    before = cache.stat().st_mtime_ns
    run_training("sustain.train.grpo", "grpo_constraints.yaml", tiny_model, out, [*flags, "--max_steps", "4"], env)
    assert cache.stat().st_mtime_ns == before
    assert_evaluated(out, [2, 4])
