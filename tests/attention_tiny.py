"""Tiny offline models and a chat tokenizer for the attention tests (random weights, nothing from a hub)."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? Answer in at most 50 words.",
    "Your answer must contain the keyword 'clips'. Use exactly three sentences. Do not use commas.",
    "Write a function that returns the sum of a list of integers. Explain each step first.",
    "She sold 48 / 2 = 24 clips in May, so 48 + 24 = 72 clips in total. The answer is 72.",
]


def chat_tokenizer() -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, show_progress=False, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def tiny_model(kind: str, vocab_size: int, attn: str, layers: int = 2, seed: int = 0):
    """GQA (4 query heads, 2 key/value heads), random weights, eval mode, float32."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    return model.eval()


def render(tokenizer, user: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def sharpen(model, scale: float = 8.0):
    """Scale query/key projections so random-weight attention is peaked rather than near-uniform."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "q_proj"):
                module.q_proj.weight.mul_(scale)
                module.k_proj.weight.mul_(scale)
    return model


def attention_dominated(model, scale: float = 16.0, value_scale: float = 10.0):
    """Peaked attention whose output dominates the residual stream: what a layer reads decides the next token."""
    sharpen(model, scale)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "v_proj"):
                module.v_proj.weight.mul_(value_scale)
    return model
