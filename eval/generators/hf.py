"""transformers backend: batched generation with left padding on any local folder or hub name."""
from __future__ import annotations

import contextlib
import os

from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.generators.chat import PLAIN_CHAT_STOPS, PLAIN_CHAT_TEMPLATE, truncate_at_stop
from sustain.eval.generators.prefix_reuse import PrefixLayout, layout, order_by_prefix, reuses, saves_prefill
from sustain.eval.hub import quiet_hub
from sustain.eval.model_check import check_model_source

DTYPES = ("auto", "float32", "bfloat16", "float16")
# measured (benchmarks/README.md): constrained stage 0.39x on HotpotQA (1,403 shared tokens), 0.83x on
# GSM8K (107); shorter prefixes are untested
PREFIX_REUSE_MIN_TOKENS = 64


@contextlib.contextmanager
def quiet_transformers():
    """transformers prints a multi-line load report before raising on a bad checkpoint; the caller says it in one line."""  # noqa: E501
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # its finished bar would stay above a one-line error
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


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
    """Greedy or seeded sampling with transformers `generate`, left-padded batches; prompts that share a
    long prefix prefill it once (prefix_reuse.py).

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
            with quiet_hub(source), quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left", **load_kwargs)
                self.model, info = AutoModelForCausalLM.from_pretrained(
                    source, dtype=_torch_dtype(dtype), attn_implementation=attn_implementation,
                    output_loading_info=True, **load_kwargs)
        except UserError:
            raise
        except (OSError, SafetensorError) as exc:  # SafetensorError: truncated or corrupt weights
            if os.path.isdir(source):
                raise UserError(f"cannot load model folder {source}: {exc}", "check that the folder holds a complete checkpoint") from None
            raise UserError(
                f"cannot load {source!r}: not a local folder and not found on the Hugging Face hub or in its cache",
                "pass a local model folder, or download it first where the hub is reachable (hf download NAME)",
            ) from None
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:  # shapes, configs, tokenizers
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "mismatched_sizes" in first or "size mismatch" in first:
                raise UserError(f"the weights in {source} do not match its config.json (tensor shapes differ)",
                                "use the config.json saved with these weights (a checkpoint's own config)") from None
            raise UserError(f"cannot load model {source}: {type(exc).__name__}: {first}",
                            "check that config.json, the tokenizer files and the weights come from the same checkpoint") from None
        missing = [k for k in info.get("missing_keys", []) if k]
        mismatched = info.get("mismatched_keys", [])
        if missing or mismatched:
            what = f"{len(missing)} weight(s) missing, e.g. {sorted(missing)[0]}" if missing else f"{len(mismatched)} weight(s) of another shape"
            raise UserError(f"the weights in {source} do not match its config.json ({what})",
                            "use the config.json saved with these weights (a checkpoint's own config)")
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:  # many base models ship without one; left padding needs it
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.uses_plain_template = not self.tokenizer.chat_template
        self.chat_template_kwargs = dict(chat_template_kwargs or {})  # template options, e.g. enable_thinking=False
        #: extra `model.generate` options (e.g. cache_implementation="static"); benchmarks compare them
        self.generate_options: dict = {}
        #: prompts sharing at least this many leading tokens are prefilled once (prefix_reuse.py); None: never
        self.prefix_reuse_min_tokens: int | None = PREFIX_REUSE_MIN_TOKENS

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
        rows = self.token_rows(prompts)
        order, groups = self._order(rows)
        results: list[Generation | None] = [None] * len(prompts)
        size = max(1, cfg.batch_size)
        for start in range(0, len(order), size):
            batch, labels = order[start : start + size], groups[start : start + size]
            batch_rows = [rows[i] for i in batch]
            plan = layout(batch_rows, labels, self.tokenizer.pad_token_id) if reuses(labels) else None
            if plan is not None and saves_prefill(plan, batch_rows):
                gens = self._generate_from_prefixes(plan, cfg, stops, seed=cfg.seed + start)
            else:
                gens = self._generate_batch(batch_rows, cfg, stops, seed=cfg.seed + start)
            for i, gen in zip(batch, gens):
                results[i] = gen
        return results

    def token_rows(self, prompts: list[str]) -> list[list[int]]:
        # The rendered chat text already carries any BOS the template wants; the plain format does not.
        return self.tokenizer(prompts, add_special_tokens=self.uses_plain_template)["input_ids"]

    def _order(self, rows: list[list[int]]) -> tuple[list[int], list[int]]:
        """Generation order, and a prefix-group label per position (all distinct: no reuse)."""
        if self.prefix_reuse_min_tokens and self._prefix_reuse_fits():
            order, groups = order_by_prefix(rows, self.prefix_reuse_min_tokens)
            if reuses(groups):
                return order, groups
        # Longest first: batches hold prompts of similar length (less padding); order is restored.
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        return order, order

    def _prefix_reuse_fits(self) -> bool:
        """Reuse hands generate a prefilled DynamicCache and pads inside rows: only full-attention
        models on the default cache take both (not a static, hybrid or sliding-window cache, whose
        windows would count the inner padding, nor linear-attention layers)."""
        config = self.model.config
        if self.generate_options or self.model.generation_config.cache_implementation is not None:
            return False
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            return False
        return all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or [])

    def _generate_batch(self, rows: list[list[int]], cfg: SamplingConfig, stops: list[str], seed: int) -> list[Generation]:
        import torch

        enc = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.device)
        kwargs = self._generate_kwargs(cfg, stops, seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        return self._decode(out[:, enc["input_ids"].shape[1] :].tolist(), cfg, stops)

    def _generate_from_prefixes(self, plan: PrefixLayout, cfg: SamplingConfig, stops: list[str], seed: int) -> list[Generation]:
        """A batch whose rows share prefixes (prefix_reuse.py): each prefix is prefilled once, its KV
        cache copied to its rows, and all rows decode together from there."""
        import torch
        from transformers import DynamicCache

        tensor = lambda x: torch.tensor(x, device=self.device)  # noqa: E731
        mask = tensor(plan.prefix_mask)
        kwargs = self._generate_kwargs(cfg, stops, seed)
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=tensor(plan.prefix_ids), attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       cache=cache, use_cache=True, logits_to_keep=1)
            cache.batch_select_indices(tensor(plan.row_group))
            out = self.model.generate(input_ids=tensor(plan.input_ids), attention_mask=tensor(plan.attention_mask),
                                      cache=cache, **kwargs)
        return self._decode(out[:, len(plan.input_ids[0]) :].tolist(), cfg, stops)

    def _generate_kwargs(self, cfg: SamplingConfig, stops: list[str], seed: int) -> dict:
        import torch

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
        return kwargs

    def _decode(self, new_tokens: list[list[int]], cfg: SamplingConfig, stops: list[str]) -> list[Generation]:
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
