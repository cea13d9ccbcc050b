"""Why greedy answers of the random benchmark model change with the kernels (CPU).

The chat benchmark's model has random weights, its output head limited to the tokenizer's 321 ids: at each step
the top two logits are close. This builds a model of the same shape and kind (seeded), answers the chat prompt
greedily with the same arithmetic in float32 and in float16, and prints, as JSON, the top-2 logit margins along the
float32 answer, how far the two precisions' logits are apart while their answers agree, and the first token where
rounding alone changes the argmax (with the margin there). The GPU's graph and compiled decoders differ by kernels
(fused, reordered sums) in float16: differences of the same order.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/chat-bench"))
    args = parser.parse_args()

    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from benchmarks.chat_speed import PROMPT, TEMPLATE
    from benchmarks.gpu_train import SHAPE
    from engine.demo import build as demo
    from engine.demo import tinymodel
    from engine.xtuner.templates import render, template

    tokenizer = tinymodel.train_tokenizer(demo._texts(demo.build_demo(args.folder / "demo").data))
    ids = tokenizer(render(template(TEMPLATE), [], PROMPT), return_tensors="pt").input_ids
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **SHAPE)).eval()
    with torch.no_grad():
        model.lm_head.weight[len(tokenizer) :] = 0  # as chat_speed.visible_vocab
    answers = {}
    for dtype in (torch.float32, torch.float16):
        model.to(dtype)
        cache, token, steps = DynamicCache(), ids, []
        with torch.inference_mode():
            for _ in range(args.new_tokens):
                logits = model(input_ids=token, past_key_values=cache).logits[0, -1].float()
                steps.append(logits)
                token = logits.argmax().view(1, 1)
        answers[str(dtype)] = steps
    full, half = answers["torch.float32"], answers["torch.float16"]
    picks = [[int(s.argmax()) for s in run] for run in (full, half)]
    split = next((i for i, (a, b) in enumerate(zip(*picks)) if a != b), None)
    margins = [float(s.topk(2).values[0] - s.topk(2).values[1]) for s in full]
    agree = full[: split + 1] if split is not None else full
    gaps = [float((a - b).abs().max()) for a, b in zip(agree, half)]
    print(json.dumps({
        "shape": SHAPE, "visible_ids": len(tokenizer), "prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens,
        "first_divergence_token": split, "margin_there": margins[split] if split is not None else None,
        "top2_margin_median": statistics.median(margins), "top2_margin_min": min(margins),
        "margins_below_0.01": sum(m < 0.01 for m in margins), "margins_below_0.05": sum(m < 0.05 for m in margins),
        "logit_std_median": statistics.median(float(s[: len(tokenizer)].std()) for s in full),
        "fp16_vs_fp32_max_logit_gap_median": statistics.median(gaps), "fp16_vs_fp32_max_logit_gap_max": max(gaps),
        "margins": [round(m, 4) for m in margins],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
