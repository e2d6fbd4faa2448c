"""transformers backend: batched generation with left padding on any local folder or hub name."""
from __future__ import annotations

import os
from pathlib import Path

from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.generators.chat import PLAIN_CHAT_STOPS, PLAIN_CHAT_TEMPLATE, truncate_at_stop
from sustain.eval.generators.gguf import converted_folder, gguf_file

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_model_source(model: str) -> str:
    """A local folder must hold a config and weights; a .gguf (or a folder holding one) is
    converted once to such a folder (generators/gguf.py); anything else is taken as a hub name.

    Returns the absolute folder path, or the hub name unchanged.
    """
    gguf = gguf_file(model)
    if gguf is not None:
        return str(converted_folder(gguf))
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise UserError(f"model folder not found: {model}", "pass an existing model folder or a hub name")
        return model
    if not path.is_dir():
        raise UserError(f"model path is not a folder: {path}", "pass the folder that holds config.json and the weights, or a .gguf file")
    if (path / "adapter_config.json").is_file():  # a PEFT adapter: transformers loads its base model itself
        return str(path.resolve())
    if not (path / "config.json").is_file():
        raise UserError(f"no config.json in model folder {path}", "pass a folder written by save_pretrained or a checkpoint-N folder")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()):
        raise UserError(
            f"model folder {path} has no weights (no *.safetensors or *.bin files)",
            "point at a checkpoint saved with its weights, or re-run save_pretrained(model) into it",
        )
    return str(path.resolve())


def _torch_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}", f"use one of: {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


class HFGenerator(Generator):
    """Greedy or seeded sampling with transformers `generate`, left-padded batches.

    `.model` and `.tokenizer` are public: the attention analysis reuses them.
    """

    local_weights = True

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        chat_template_kwargs: dict | None = None,
    ):
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = check_model_source(str(model))
        self.model_id = source
        self.device = _torch_device(device)
        load_kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left", **load_kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                source, dtype=_torch_dtype(dtype), attn_implementation=attn_implementation, **load_kwargs
            )
        except (OSError, SafetensorError) as exc:  # SafetensorError: truncated or corrupt weights
            if os.path.isdir(source):
                raise UserError(f"cannot load model folder {source}: {exc}".replace("\n", " "), "check that the folder holds a complete checkpoint") from None
            raise UserError(
                f"cannot load {source!r}: not a local folder and not found on the Hugging Face hub or in its cache",
                "pass a local model folder, or download it first where the hub is reachable (hf download NAME)",
            ) from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:  # many base models ship without one; left padding needs it
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.uses_plain_template = not self.tokenizer.chat_template
        self.chat_template_kwargs = dict(chat_template_kwargs or {})  # template options, e.g. enable_thinking=False
        #: extra `model.generate` options (e.g. cache_implementation="static"); benchmarks compare them
        self.generate_options: dict = {}

    def prompt_text(self, conversation: list[dict]) -> str:
        """The exact text the model is conditioned on for a conversation."""
        template = PLAIN_CHAT_TEMPLATE if self.uses_plain_template else None
        return self.tokenizer.apply_chat_template(
            conversation, chat_template=template, tokenize=False, add_generation_prompt=True,
            **self.chat_template_kwargs,
        )

    def generate(self, conversations: list[list[dict]], cfg: SamplingConfig) -> list[Generation]:
        prompts = [self.prompt_text(c) for c in conversations]
        stops = list(cfg.stop) + (PLAIN_CHAT_STOPS if self.uses_plain_template else [])
        # Longest first: batches hold prompts of similar length (less padding); order is restored.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        size = max(1, cfg.batch_size)
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            gens = self._generate_batch([prompts[i] for i in batch], cfg, stops, seed=cfg.seed + start)
            for i, gen in zip(batch, gens):
                results[i] = gen
        return results

    def _generate_batch(self, prompts: list[str], cfg: SamplingConfig, stops: list[str], seed: int) -> list[Generation]:
        import torch

        # The rendered chat text already carries any BOS the template wants; the plain format does not.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=self.uses_plain_template)
        enc = enc.to(self.device)
        sample = cfg.temperature > 0
        kwargs = dict(
            max_new_tokens=cfg.max_new_tokens,
            do_sample=sample,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if sample:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
            torch.manual_seed(seed)
        else:  # a model's generation_config may set sampling knobs; greedy must ignore them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        kwargs.update(self.generate_options)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        eos_ids = self._eos_ids()
        results = []
        for ids in new_tokens:
            n = len(ids)
            ended = False
            for k, tok in enumerate(ids):
                if tok in eos_ids:
                    n, ended = k + 1, True
                    break
            if not ended:  # sequences stopped by a stop string are right-padded with pad tokens
                while n > 0 and ids[n - 1] == self.tokenizer.pad_token_id:
                    n -= 1
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            text, hit_stop = truncate_at_stop(text, stops)
            reason = "stop" if ended or hit_stop or n < cfg.max_new_tokens else "length"
            results.append(Generation(text=text, finish_reason=reason, n_tokens=n))
        return results

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def close(self) -> None:
        import torch

        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
