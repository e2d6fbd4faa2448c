"""Generator registry: `make_generator("hf", model=...)`; a new backend is one file plus one line."""
from __future__ import annotations

from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.registry import build

BACKENDS = {
    "hf": "sustain.eval.generators.hf:HFGenerator",
    "vllm": "sustain.eval.generators.vllm_backend:VLLMGenerator",
    "openai": "sustain.eval.generators.openai_http:OpenAIGenerator",
}


def make_generator(backend: str, **options) -> Generator:
    return build(BACKENDS, backend, "generation backend", **options)


__all__ = ["BACKENDS", "Generation", "Generator", "SamplingConfig", "make_generator"]
