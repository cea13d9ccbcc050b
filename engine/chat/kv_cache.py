"""The eager decoder's KV cache and attention: the same arithmetic as HF's, with less memory traffic per token.

HF's DynamicCache concatenates every layer's keys and values on each token, and its SDPA attention copies
the grouped KV heads out to every query head first (repeat_kv). On a CPU, where decoding is bound by memory,
those copies cost ~10-15 % of a 142M model's step at a few hundred positions (benchmarks/chat_speed.py).
"""

from __future__ import annotations

from functools import cache

ROOM = 256  # positions a layer's buffers start with; they double when full


@cache
def _growing_cache_class():
    from transformers import DynamicCache

    class GrowingCache(DynamicCache):
        """A DynamicCache that writes into buffers with room to spare (doubling when full) instead of concatenating.

        `key_cache[i]` / `value_cache[i]` stay views of the filled part, so everything that reads a DynamicCache
        (sequence length, cropping, masks) sees what it expects.
        """

        def __init__(self) -> None:
            super().__init__()
            self._buffers: list[tuple] = []  # per layer: (keys, values) with room to spare

        def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
            if layer_idx == 0:
                self._seen_tokens += key_states.shape[-2]
            if len(self._buffers) <= layer_idx:
                self._buffers.append((key_states[:, :, :0], value_states[:, :, :0]))
                self.key_cache.append(key_states[:, :, :0])
                self.value_cache.append(value_states[:, :, :0])
            filled = self.key_cache[layer_idx].shape[-2]
            end = filled + key_states.shape[-2]
            keys, values = self._buffers[layer_idx]
            if end > keys.shape[-2]:
                keys, values = (_with_room(old[:, :, :filled], max(ROOM, 2 * end)) for old in (keys, values))
                self._buffers[layer_idx] = (keys, values)
            keys[:, :, filled:end] = key_states
            values[:, :, filled:end] = value_states
            self.key_cache[layer_idx], self.value_cache[layer_idx] = keys[:, :, :end], values[:, :, :end]
            return self.key_cache[layer_idx], self.value_cache[layer_idx]

    return GrowingCache


def _with_room(filled, positions: int):
    """A buffer of `positions` positions that starts with `filled`."""
    buffer = filled.new_empty((*filled.shape[:2], positions, filled.shape[-1]))
    buffer[:, :, : filled.shape[-2]] = filled
    return buffer


def growing_cache():
    """A fresh GrowingCache (a DynamicCache that does not concatenate on every token)."""
    return _growing_cache_class()()


@cache
def use_grouped_attention() -> None:
    """Make HF's "sdpa" attention hand grouped KV heads to torch's SDPA as they are (enable_gqa) when there is no mask.

    Same result as repeating the heads first, without the copy; with a mask or dropout HF's own function runs.
    Installed once per process, for every model that uses HF's attention table (Llama, Qwen2, Mistral...).
    """
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    hf_sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        if attention_mask is not None or dropout:
            return hf_sdpa(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, scale=scaling, is_causal=query.shape[2] > 1 if is_causal is None else is_causal,
            enable_gqa=key.shape[1] != query.shape[1],
        )  # fmt: skip
        return out.transpose(1, 2).contiguous(), None

    ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa
