"""Generator registry: `make_generator("hf", model=...)`; a new backend is one file plus one line."""
from __future__ import annotations

from importlib import import_module

from eval.errors import UserError
from eval.generators.base import Generation, Generator, SamplingConfig

BACKENDS = {
    "hf": "eval.generators.hf:HFGenerator",
    "vllm": "eval.generators.vllm_backend:VLLMGenerator",
    "openai": "eval.generators.openai_http:OpenAIGenerator",
}


def make_generator(backend: str, **options) -> Generator:
    if backend not in BACKENDS:
        raise UserError(f"unknown generation backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend].split(":")
    return getattr(import_module(module), cls)(**options)


__all__ = ["BACKENDS", "Generation", "Generator", "SamplingConfig", "make_generator"]
