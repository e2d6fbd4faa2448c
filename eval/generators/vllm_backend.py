"""vLLM backend (GPU machines): offline batched generation through `LLM.chat`.

vllm is imported only when a VLLMGenerator is built, so this module imports anywhere.
"""
from __future__ import annotations

from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.generators.chat import PLAIN_CHAT_STOPS, PLAIN_CHAT_TEMPLATE, truncate_at_stop
from sustain.eval.model_check import check_model_source


class VLLMGenerator(Generator):
    local_weights = True

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
        chat_template_kwargs: dict | None = None,
        **llm_kwargs,
    ):
        try:
            import vllm
        except ImportError:
            raise UserError("vllm is not installed", "pip install 'sustain-suite[vllm]' on a GPU machine") from None
        self._vllm = vllm
        source = check_model_source(str(model))
        self.model_id = source
        # a constrained item's control and k prompts share the question's prefix: let vLLM reuse its KV
        # blocks (the default in vLLM's V1 engine; set here so older engines do it too)
        llm_kwargs.setdefault("enable_prefix_caching", True)
        self.llm = vllm.LLM(
            model=source,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            trust_remote_code=trust_remote_code,
            seed=seed,
            **llm_kwargs,
        )
        # Base models without a chat template get the same plain format as the hf backend.
        self.chat_template_kwargs = dict(chat_template_kwargs or {})  # e.g. enable_thinking=False
        self.uses_plain_template = not getattr(self.llm.get_tokenizer(), "chat_template", None)

    def sampling_params(self, cfg: SamplingConfig):
        stops = list(cfg.stop) + (PLAIN_CHAT_STOPS if self.uses_plain_template else [])
        return self._vllm.SamplingParams(
            max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,  # vLLM treats 0 as greedy
            top_p=cfg.top_p,
            stop=stops or None,
            seed=cfg.seed,
        )

    def generate(self, conversations: list[list[dict]], cfg: SamplingConfig) -> list[Generation]:
        if not conversations:
            return []
        params = self.sampling_params(cfg)
        outputs = self.llm.chat(
            conversations,
            params,
            use_tqdm=False,
            chat_template=PLAIN_CHAT_TEMPLATE if self.uses_plain_template else None,
            add_generation_prompt=True,
            chat_template_kwargs=self.chat_template_kwargs or None,
        )
        results = []
        for out in outputs:
            completion = out.outputs[0]
            text, hit_stop = truncate_at_stop(completion.text, params.stop or [])
            reason = "length" if completion.finish_reason == "length" and not hit_stop else "stop"
            results.append(Generation(text=text, finish_reason=reason, n_tokens=len(completion.token_ids)))
        return results

    def close(self) -> None:
        del self.llm
