"""The one Generator interface: chat conversations in, text out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    batch_size: int = 16


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (hit max_new_tokens)
    n_tokens: int  # generated tokens (as counted by the backend)


class Generator(ABC):
    """A generation backend; the registry in generators/__init__.py lists them."""

    #: identifies the model in run folders (a path, hub name or endpoint+model); a run folder
    #: made by another model is refused.
    model_id: str = ""
    #: the model is a checkpoint (local or hub) whose weights transformers can load in this process:
    #: the attention and ablation stages can analyse runs made with this backend.
    local_weights: bool = False

    @abstractmethod
    def generate(self, conversations: list[list[dict]], cfg: SamplingConfig) -> list[Generation]:
        """One Generation per conversation, in order. Greedy output does not depend on batching."""

    def close(self) -> None:
        """Free resources (GPU memory, HTTP sessions)."""
