"""The eager decoder's KV cache and attention: the same arithmetic as HF's, with less memory traffic per token.

HF's DynamicCache concatenates every layer's keys and values on each token, and its SDPA attention copies
the grouped KV heads out to every query head first (repeat_kv). On a CPU, where decoding is bound by memory,
those copies cost ~10-15 % of a 142M model's step at a few hundred positions (benchmarks/chat_speed.py).
"""

from __future__ import annotations

from functools import cache

ROOM = 256  # positions a layer's buffers start with; they double when full
GROUPED_SDPA = "xtui_grouped_sdpa"  # the name of the grouped attention in transformers' attention table


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
def _registered_attention() -> str:
    """Add the grouped attention to transformers' table of attention functions, once per process; its name.

    transformers 4.48 (the version xtuner 0.2.0 pins) has no AttentionInterface yet: its public table is this dict,
    which `AttentionInterface.register` fills in later versions. HF's own "sdpa" entry stays as it is.
    """
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def grouped_sdpa(
        module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, kv_span=None, **kwargs
    ):  # fmt: skip
        """HF's SDPA attention, with the grouped KV heads handed to torch as they are (enable_gqa), not repeated.

        `kv_span`, a tensor as long as the positions to read: a static cache's first positions only (a step reads
        its span's keys, not the whole cache's), one query at a time as two batched products over the KV heads.
        """
        if kv_span is not None:
            key, value = key[:, :, : kv_span.shape[0]], value[:, :, : kv_span.shape[0]]
        mask = None if attention_mask is None else attention_mask[:, :, :, : key.shape[-2]]
        if kv_span is not None and query.shape[2] == 1 and mask is not None:
            return _one_query(query, key, value, mask, scaling), None
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling,
            is_causal=mask is None and query.shape[2] > 1 if is_causal is None else is_causal,
            enable_gqa=key.shape[1] != query.shape[1],
        )  # fmt: skip
        return out.transpose(1, 2).contiguous(), None

    ALL_ATTENTION_FUNCTIONS[GROUPED_SDPA] = grouped_sdpa
    return GROUPED_SDPA


def _one_query(query, key, value, mask, scaling):
    """Attention of one query position, each KV head read once by the query heads that share it; (1, 1, heads, dim)."""
    batch, heads, _, dim = query.shape
    grouped = query.view(batch, key.shape[1], heads // key.shape[1], dim)
    scores = (grouped @ key.transpose(-1, -2)).float() * (dim**-0.5 if scaling is None else scaling) + mask
    out = scores.softmax(-1).to(value.dtype) @ value
    return out.view(batch, 1, heads, dim)


def use_grouped_attention(model) -> None:
    """Make a model that runs HF's SDPA attention run the grouped one: same result, no copy of the KV heads.

    The model's config names the attention its layers look up (Llama, Qwen2, Mistral...); other models keep theirs.
    """
    if model.config._attn_implementation == "sdpa":
        model.config._attn_implementation = _registered_attention()


def reads_spans(model) -> bool:
    """Whether a model's steps can read a span of the cache: it runs the grouped attention and hands keyword arguments
    down to it (transformers' own models do; remote code may not take them)."""
    import inspect

    parameters = inspect.signature(model.forward).parameters.values()
    return model.config._attn_implementation == GROUPED_SDPA and any(p.kind is p.VAR_KEYWORD for p in parameters)
