"""Every recipe parses into TRL's dataclasses; mistakes are one-line errors; launcher configs are valid."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import need_data

from sustain.eval.errors import UserError
from sustain.train.config import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if p.parent.name not in ("accelerate", "eval"))
EVAL_FILES = sorted((ROOT / "recipes").glob("*/eval/*.yaml"))  # eval blocks that recipes share


def kind_of(recipe: Path) -> str:
    return "sft" if recipe.stem.startswith("sft") else "grpo"


def test_there_are_recipes_for_every_paradigm():
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in RECIPES}
    assert {"demo/sft.yaml", "demo/grpo.yaml", "demo/grpo_constraints.yaml", "qwen2.5-1.5b/sft_longcot.yaml",
            "qwen2.5-1.5b/grpo_gsm8k.yaml", "qwen2.5-1.5b/grpo_constraints.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_recipe_parses(recipe, tmp_path):
    # recipes name the benchmark data beside the checkout (../shared/data); their eval blocks check it exists
    for rel in re.findall(r"\.\./shared/data/([^\s#]+)", "\n".join(
            line for line in recipe.read_text().splitlines() if not line.lstrip().startswith("#"))):
        need_data(rel)
    script, trainer, model = parse_recipe(kind_of(recipe), ["--config", str(recipe), "--output_dir", str(tmp_path)])
    assert model.model_name_or_path
    assert script.recipe == str(recipe.resolve())
    assert trainer.save_strategy == "steps" and trainer.save_steps > 0
    if kind_of(recipe) == "grpo":
        from sustain.train.rewards import get_rewards

        get_rewards(script.reward_funcs)  # every named reward exists
        # TRL's own divisibility rule for one process
        assert (trainer.per_device_train_batch_size * trainer.steps_per_generation) % trainer.num_generations == 0


def write(tmp_path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def test_cli_flags_override_the_yaml(tmp_path):
    recipe = write(tmp_path, "model_name_or_path: m\noutput_dir: o\nlearning_rate: 1.0e-3\neval: {limit: 5, seed: 3}\n")
    script, trainer, _ = parse_recipe("sft", ["--config", recipe, "--learning_rate", "0.5", "--eval.limit", "7"])
    assert trainer.learning_rate == 0.5 and (script.eval.limit, script.eval.seed) == (7, 3)


def test_null_is_taken_where_a_setting_may_be_none_and_refused_where_not(tmp_path):
    """save_total_limit: null keeps every checkpoint (a transformers default); max_steps has no None."""
    for _ in range(2):  # the second parse runs after HfArgumentParser has rewritten the field types
        _, trainer, _ = parse_recipe("sft", ["--config", write(tmp_path, "model_name_or_path: m\nsave_total_limit: null\n")])
        assert trainer.save_total_limit is None
    with pytest.raises(UserError, match="max_steps .* must be a whole number, got None"):
        parse_recipe("sft", ["--config", write(tmp_path, "model_name_or_path: m\nmax_steps: null\n")])


@pytest.mark.parametrize("path", EVAL_FILES, ids=lambda p: p.parts[-3])
def test_shared_eval_files_are_eval_configs(path):
    from sustain.eval.config import EvalConfig, from_dict, load_yaml

    assert isinstance(from_dict(EvalConfig, load_yaml(path)), EvalConfig)


@pytest.mark.parametrize("family", ["demo", "qwen2.5-1.5b", "smollm2-135m"])
def test_recipes_that_are_compared_share_one_eval_block(family):
    from sustain.train.eval_block import recipe_eval_config

    recipes = sorted((ROOT / "recipes" / family).glob("*.yaml"))
    assert len(recipes) >= 2 and len({repr(recipe_eval_config(r)) for r in recipes}) == 1


def test_eval_block_takes_every_eval_config_key_a_file_and_flags(tmp_path):
    import dataclasses

    from sustain.eval.config import EvalConfig

    shared = tmp_path / "shared.yaml"
    shared.write_text("tasks: [arith]\nfamilies: [hard, soft]\nsoft_model: judge\nsoft_base_url: http://x/v1\n"
                      "categories: [length]\nposition: prepend\nk_max: 2\nattention: true\nablation: true\n")
    recipe = write(tmp_path, "model_name_or_path: m\neval: {include: shared.yaml, k_max: 3}\n")
    script, _, _ = parse_recipe("sft", ["--config", recipe, "--eval.position", "system", "--eval.seed=5"])
    e = script.eval
    assert (e.families, e.soft_model, e.categories, e.k_max, e.position, e.seed, e.attention, e.ablation) == \
        (["hard", "soft"], "judge", ["length"], 3, "system", 5, True, True)
    assert {f.name for f in dataclasses.fields(EvalConfig)} - {"model", "out"} <= set(vars(e))
    with pytest.raises(UserError, match="set for each checkpoint"):
        parse_recipe("sft", ["--config", write(tmp_path, "model_name_or_path: m\neval: {out: x}\n")])


@pytest.mark.parametrize("kind, text, key, hint", [
    ("sft", "model_name_or_path: m\nlearning_rat: 1.0\n", "learning_rat", "learning_rate"),
    ("sft", "model_name_or_path: m\nreward_funcs: [accuracy]\n", "reward_funcs", None),  # a GRPO-only key
    ("grpo", "model_name_or_path: m\neval_mod: inline\n", "eval_mod", "eval_mode"),
])
def test_unknown_yaml_key_names_it_and_the_valid_ones(tmp_path, kind, text, key, hint):
    with pytest.raises(UserError) as err:
        parse_recipe(kind, ["--config", write(tmp_path, text)])
    message = str(err.value)
    assert "\n" not in message and repr(key) in message and f"sustain train {kind} --help" in message
    if hint:
        assert f"did you mean {hint}" in message


def test_unknown_or_abbreviated_flag_is_an_error(tmp_path):
    recipe = write(tmp_path, "model_name_or_path: m\n")
    for flag in ("--eval_mod", "--no_such_flag"):  # argparse would take a prefix of eval_mode silently
        with pytest.raises(UserError, match=flag.lstrip("-")):
            parse_recipe("grpo", ["--config", recipe, flag, "inline"])


def test_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="eval_mode"):
        parse_recipe("sft", ["--config", write(tmp_path, "model_name_or_path: m\neval_mode: later\n")])
    with pytest.raises(UserError, match="no model"):
        parse_recipe("sft", ["--config", write(tmp_path, "output_dir: o\n")])
    with pytest.raises(UserError, match="recipe not found"):
        parse_recipe("sft", ["--config", str(tmp_path / "missing.yaml")])


def test_entry_point_prints_one_line_and_no_traceback(tmp_path):
    recipe = write(tmp_path, "model_name_or_path: m\nlearning_rat: 1\n")
    proc = subprocess.run([sys.executable, "-m", "sustain", "train", "sft", "--config", recipe], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sustain: error:")]
    assert len(errors) == 1 and "learning_rat" in errors[0]


def test_local_model_paths_become_absolute(tmp_path, monkeypatch):
    # a PEFT adapter stores the base path as given: relative paths would break from another folder
    (tmp_path / "base").mkdir()
    monkeypatch.chdir(tmp_path)
    _, _, model = parse_recipe("sft", ["--model_name_or_path", "base", "--output_dir", "o"])
    assert model.model_name_or_path == str(tmp_path / "base")


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(ROOT / "recipes" / "accelerate" / f"{name}.yaml")
    if name == "ddp":
        assert cfg.distributed_type == "MULTI_GPU"
    else:
        ds_file = ROOT / cfg.deepspeed_config["deepspeed_config_file"]
        assert cfg.distributed_type == "DEEPSPEED" and ds_file.is_file()
        assert json.loads(ds_file.read_text())["zero_optimization"]["stage"] == int(name[-1])


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("grad_accum", [1, 4])
def test_deepspeed_configs_pass_deepspeeds_parser(stage, grad_accum):
    """The "auto" values are filled the way the Trainer fills them, then DeepSpeed's own parser checks the result."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    from trl import SFTConfig

    args = SFTConfig(output_dir="o", use_cpu=True, bf16=True, per_device_train_batch_size=4,
                     gradient_accumulation_steps=grad_accum, activation_checkpointing=False)
    hf = HfTrainerDeepSpeedConfig(str(ROOT / "recipes" / "deepspeed" / f"zero{stage}.json"))
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=1536)), num_training_steps=100)
    assert "auto" not in json.dumps(hf.config)
    ds = DeepSpeedConfig(hf.config)
    assert ds.zero_optimization_stage == stage and ds.bfloat16_config.enabled
    assert ds.train_batch_size == 4 * grad_accum * ds.world_size
