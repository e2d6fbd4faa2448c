"""Generator registry: `make_generator("hf", model=...)`; a new backend is one file plus one line here (or,
from outside the package, a "module:Class" spec wherever a backend name goes)."""
from __future__ import annotations

from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.registry import accepted, build, resolve

BACKENDS = {
    "hf": "sustain.eval.generators.hf:HFGenerator",
    "vllm": "sustain.eval.generators.vllm_backend:VLLMGenerator",
    "openai": "sustain.eval.generators.openai_http:OpenAIGenerator",
}
DEFAULT_BACKEND = "hf"  # transformers in this process
ENDPOINT_BACKEND = "openai"  # any OpenAI-compatible server (the soft-constraint LLM's default)


def backend_class(backend: str) -> type[Generator]:
    return resolve(BACKENDS, backend, "generation backend", Generator)


def make_generator(backend: str, **options) -> Generator:
    return build(BACKENDS, backend, "generation backend", Generator, **options)


def open_generator(backend: str, model: str, **settings) -> Generator:
    """A generator for `model` given the run-wide settings; each backend takes the ones its constructor
    names (an endpoint's URL and retries, say) and ignores the rest."""
    return make_generator(backend, model=model, **accepted(backend_class(backend), settings))


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "ENDPOINT_BACKEND", "Generation", "Generator", "SamplingConfig", "backend_class",
           "make_generator", "open_generator"]
