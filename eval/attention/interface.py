"""Route a model's attention calls through a wrapper, for one model and only inside a `with` block.

transformers 5.x dispatches every attention layer through `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`
with the query and key already rotated (RoPE), the 4D mask built for that implementation, and the scaling.
Registering a wrapper under a fresh name and pointing this model's config at it gives us exactly those
tensors without patching the modeling code, and leaves every other model in the process untouched.
"""
from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from sustain.eval.errors import UserError

SUPPORTED = ("sdpa", "eager")
_fresh_ids = itertools.count()

# wrapper(inner, module, query, key, value, attention_mask, **kwargs) -> (output, weights)
Wrapper = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def _model_attention(implementation: str, module: torch.nn.Module) -> Callable:
    """The function the model itself would call: sdpa from the registry, eager from its own modeling file."""
    if implementation == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise UserError(
            f"{type(module).__name__} has no eager_attention_forward in its modeling file",
            "load the model with attn_implementation='sdpa'",
        )
    return eager


@contextmanager
def attention_wrapped(model: torch.nn.Module, wrapper: Wrapper) -> Iterator[None]:
    """Inside the block, every attention call of `model` goes through `wrapper`, which gets the model's own
    attention function as `inner` (and the mask that function expects)."""
    config = model.config
    implementation = config._attn_implementation
    if implementation not in SUPPORTED:
        raise UserError(
            f"attention analysis supports attn_implementation sdpa or eager, the model uses {implementation!r}",
            "load the model with attn_implementation='sdpa' or 'eager'",
        )
    name = f"sustain_span_{next(_fresh_ids)}"

    def dispatch(module, query, key, value, attention_mask, **kwargs):
        inner = _model_attention(implementation, module)
        return wrapper(inner, module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(name, dispatch)
    # Masks are built in the original implementation's format (sdpa: bool or None, eager: additive float).
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[implementation])
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = implementation
        AttentionInterface._global_mapping.pop(name, None)
        AttentionMaskInterface._global_mapping.pop(name, None)


def visible_keys(
    attention_mask: torch.Tensor | None, rows: slice, query_len: int, key_len: int, device: torch.device
) -> torch.Tensor:
    """(B or 1, 1, len(rows), key_len) bool: which keys the queries `rows` of this call may attend to.

    Works for every mask format the model may pass: None (plain causal, no padding: sdpa skips building
    the mask), bool (sdpa) or additive float (eager, the dtype's minimum where blocked). The queries of a
    call are the last `query_len` of the `key_len` positions (true with or without a cache)."""
    if attention_mask is None:
        first = key_len - query_len
        q_pos = torch.arange(first + rows.start, first + rows.stop, device=device).unsqueeze(1)
        return (torch.arange(key_len, device=device).unsqueeze(0) <= q_pos)[None, None]
    mask = attention_mask[:, :, rows, :key_len]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2
