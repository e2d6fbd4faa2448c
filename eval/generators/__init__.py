"""Generator registry: `make_generator("hf", model=...)`; a new backend is one file plus one line."""
from __future__ import annotations

from eval.generators.base import Generation, Generator, SamplingConfig
from eval.registry import build

BACKENDS = {
    "hf": "eval.generators.hf:HFGenerator",
    "vllm": "eval.generators.vllm_backend:VLLMGenerator",
    "openai": "eval.generators.openai_http:OpenAIGenerator",
}


def make_generator(backend: str, **options) -> Generator:
    return build(BACKENDS, backend, "generation backend", **options)


__all__ = ["BACKENDS", "Generation", "Generator", "SamplingConfig", "make_generator"]
