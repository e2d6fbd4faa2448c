"""The offline tiny base model: tokenizer round trip, chat template, cache, and the trained skill."""
import json

import pytest

import sustain.train.tiny as tiny
from sustain.eval.errors import UserError, run_entry
from sustain.eval.generators.base import SamplingConfig
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.tasks.arith import ArithTask

CONVERSATION = [
    {"role": "user", "content": "Tom has 23 apples and buys 45 more. How many apples does Tom have?"},
    {"role": "assistant", "content": "23 + 45 = 68. The answer is 68."},
]


@pytest.fixture(scope="module")
def untrained_dir(tmp_path_factory):
    return tiny.save_untrained(tmp_path_factory.mktemp("untrained"))


def test_token_ids_round_trip_through_auto_tokenizer(untrained_dir):
    from transformers import AutoTokenizer

    built = tiny.build_tokenizer()
    loaded = AutoTokenizer.from_pretrained(untrained_dir)
    assert json.loads((untrained_dir / "config.json").read_text())["model_type"] == "llama"
    texts = [
        built.apply_chat_template(CONVERSATION, tokenize=False),
        "Ünïcode, émojis 🙂 and tabs\tstill encode.",
        "12345 + 67890 = 80235",
    ]
    for text in texts:
        ids = built(text, add_special_tokens=False)["input_ids"]
        assert loaded(text, add_special_tokens=False)["input_ids"] == ids
        assert loaded.decode(ids) == text
    assert loaded.chat_template == built.chat_template
    assert (loaded.eos_token, loaded.pad_token) == ("<|end|>", "<|pad|>")


def test_every_digit_is_its_own_token():
    tok = tiny.build_tokenizer()
    pieces = [tok.decode([i]) for i in tok("x 9071 y", add_special_tokens=False)["input_ids"]]
    assert [p for p in pieces if p.strip().isdigit()] == ["9", "0", "7", "1"]
    assert len(tok("<|user|><|assistant|><|end|>", add_special_tokens=False)["input_ids"]) == 3


def test_chat_template_marks_the_answer_and_end_token_for_assistant_only_loss():
    tok = tiny.build_tokenizer()
    enc = tok.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == CONVERSATION[1]["content"] + "<|end|>"
    prompt = tok.apply_chat_template(CONVERSATION[:1], tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(CONVERSATION, tokenize=False).startswith(prompt)


def test_unknown_config_option_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="hidden"):
        tiny.ensure_tiny_base(tmp_path, hiden_size=64)


def test_cache_is_keyed_by_config_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fake_train(out_dir, cfg, progress=True):
        calls.append(cfg)
        (out_dir / "config.json").write_text("{}")
        if cfg.seed == 13:
            raise RuntimeError("killed mid-build")
        return out_dir

    monkeypatch.setattr(tiny, "train_tiny", fake_train)
    first = tiny.ensure_tiny_base(tmp_path, steps=3)
    assert tiny.ensure_tiny_base(tmp_path, steps=3) == first and len(calls) == 1
    assert tiny.ensure_tiny_base(tmp_path, steps=4) != first and len(calls) == 2
    with pytest.raises(RuntimeError):
        tiny.ensure_tiny_base(tmp_path, steps=3, seed=13)
    leftovers = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(leftovers) == sorted([first.name, tiny.ensure_tiny_base(tmp_path, steps=4).name])


def test_cached_build_goes_to_the_cache_the_tests_read_and_is_reused(tmp_path, monkeypatch, capsys):
    """`make tiny-model` (`sustain tiny --cached`) builds before the tests, into $SUSTAIN_CACHE_DIR."""
    calls = []

    def fake_train(out_dir, cfg, progress=True):
        calls.append(cfg)
        (out_dir / "config.json").write_text("{}")
        return out_dir

    monkeypatch.setattr(tiny, "train_tiny", fake_train)
    monkeypatch.setenv("SUSTAIN_CACHE_DIR", str(tmp_path))
    assert tiny.main(["--cached", "--steps", "3"]) == 0
    assert tiny.main(["--cached", "--steps", "3"]) == 0
    first, second = capsys.readouterr().out.split()
    assert first == second == str(tmp_path / "tiny-models" / f"tiny-base-{tiny.TinyConfig(steps=3).key()}")
    assert len(calls) == 1 and (tmp_path / "tiny-models" / first.rsplit("/", 1)[1] / "config.json").is_file()
    assert run_entry(tiny.main, ["--cached", "--steps", str(10**20)]) == 2 and len(calls) == 1  # refused before any build
    assert capsys.readouterr().err.startswith("sustain: error: --steps must be 1 to 100000")


@pytest.mark.slow
def test_tiny_base_model_solves_held_out_arith(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= names
    task = ArithTask()
    items = task.load("test", limit=200)
    gen = HFGenerator(str(tiny_model), device="cpu")
    outs = gen.generate([task.messages(it) for it in items], SamplingConfig(max_new_tokens=48, batch_size=64))
    grades = task.grade_many(items, [o.text for o in outs])
    accuracy = sum(g.success for g in grades) / len(grades)
    assert accuracy >= 0.90, accuracy
    assert all(o.finish_reason == "stop" for o in outs)  # it learned to end its turn
