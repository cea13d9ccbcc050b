"""Chat speed: xtui's chat path next to plain HF `generate` and `python -m xtuner.tools.chat`, same model, same run.

GPU: the 1.89B InternLM2-shaped random model in fp16 (benchmarks/gpu_train.build_model). CPU: the demo's tiny
model, or (`--cpu-model small`) a random 142M one of realistic per-token cost. Greedy, no EOS, so every path makes
the same number of tokens. `--paired` (for a shared machine) times plain `generate` and the engine alone between the
pane's answers, on the pane's loaded model, so that other processes' load falls on all three alike; every result
says how much of the machine's CPU other processes used meanwhile. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

PROMPT = "你是谁"
TEMPLATE = "internlm2_chat"
SMALL_SHAPE = dict(  # InternLM2's proportions (GQA 2:1, MLP 2.75x) at 142M parameters with the demo's vocabulary
    hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=8,
    max_position_embeddings=2048,
)  # fmt: skip


def _prompt_ids(tokenizer, device: str):
    from engine.xtuner.templates import render, template

    return tokenizer(render(template(TEMPLATE), [], PROMPT), return_tensors="pt").input_ids.to(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def hf_attention(model):
    """HF's own SDPA attention meanwhile: the engine's eager decoder sets the model to one that skips repeat_kv."""
    from engine.chat.kv_cache import GROUPED_SDPA

    installed = model.config._attn_implementation
    if installed == GROUPED_SDPA:
        model.config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        model.config._attn_implementation = installed


def plain_generate(model, tokenizer, device: str, new_tokens: int, repeats: int) -> dict:
    """HF generate, greedy, eager, as HF ships it: tokens/s from the time of N tokens minus the time of 1 (the prefill)."""
    import torch

    ids = _prompt_ids(tokenizer, device)

    def timed(n: int) -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.inference_mode(), hf_attention(model):
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        _sync(device)
        assert out.shape[1] - ids.shape[1] == n
        return time.perf_counter() - start

    timed(8)  # warm-up
    firsts = [timed(1) for _ in range(repeats)]
    wholes = [timed(new_tokens) for _ in range(repeats)]
    first = statistics.median(firsts)
    return {"tok_s": (new_tokens - 1) / (statistics.median(wholes) - first), "first_token_ms": 1000 * first}


def streamer_thread(model, tokenizer, device: str, new_tokens: int) -> dict:
    """HF generate in a thread with TextIteratorStreamer, read by this thread: how chat UIs usually stream."""
    from transformers import TextIteratorStreamer

    ids = _prompt_ids(tokenizer, device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    kwargs = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=streamer, pad_token_id=0
    )
    worker = threading.Thread(target=model.generate, args=(ids,), kwargs=kwargs)
    start = time.perf_counter()
    worker.start()
    stamps = [time.perf_counter() for _ in streamer]
    worker.join()
    return {"tok_s": (new_tokens - 1) / (stamps[-1] - stamps[0]), "first_token_ms": 1000 * (stamps[0] - start)}


def xtuner_chat(model_dir: Path, new_tokens: int, dtype: str) -> dict:
    """`python -m xtuner.tools.chat` (eager generate + TextStreamer): per-token time from two answer lengths."""

    def timed(n: int) -> float:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "xtuner.tools.chat", str(model_dir), "--prompt-template", TEMPLATE,
             "--max-new-tokens", str(n), "--temperature", "0", "--torch-dtype", dtype],
            input=f"{PROMPT}\n\nEXIT\n\n", capture_output=True, text=True, check=True,
        )  # fmt: skip
        return time.perf_counter() - start

    short, long = 16, 16 + new_tokens
    return {"tok_s": new_tokens / (timed(long) - timed(short)), "note": "whole-process difference of two lengths"}


def xtui_chat(model_dir: Path, device: str, new_tokens: int, repeats: int, mode: str) -> dict:
    """xtui's path: load, a ChatSession answering through the decoder, text pieces read as they come."""
    from engine.chat.decoding import Sampling
    from engine.chat.models import LoadOptions, ModelSource, SourceKind, load
    from engine.chat.session import ChatSession
    from engine.xtuner.templates import template

    start = time.perf_counter()
    loaded = load(ModelSource(SourceKind.BASE, model=model_dir), LoadOptions(device=device, decoder=mode))
    loaded.eos_ids = lambda: []  # the random model must not stop early
    load_s = time.perf_counter() - start
    session = ChatSession(loaded, template(TEMPLATE), sampling=Sampling(temperature=0, max_new_tokens=new_tokens))
    session.stop_words = lambda: ()

    def answer() -> dict:
        session.reset()
        begin = time.perf_counter()
        stamps = [time.perf_counter() for _ in session.reply(PROMPT)]
        last = session.last
        assert last.tokens == new_tokens, last.tokens
        return {"first_piece_ms": 1000 * (stamps[0] - begin), "engine_tok_s": last.tokens_per_s,
                "seen_tok_s": (new_tokens - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None}  # fmt: skip

    warm = time.perf_counter()
    answer()
    warm_s = time.perf_counter() - warm
    runs = [answer() for _ in range(repeats)]
    med = {key: statistics.median(r[key] or 0.0 for r in runs) for key in runs[0]}
    return {"load_s": load_s, "warm_up_s": warm_s, **med}


async def _pane(model_dir: Path, device: str, new_tokens: int, repeats: int, mode: str, paired: bool = False) -> dict:
    """The chat screen in a headless app: tokens/s and first-token time as the pane receives them.

    `paired`: plain `generate` and the engine alone answer too, on the pane's model, in turn with each pane answer.
    """
    from engine.chat.decoding import Sampling
    from engine.chat.models import LoadOptions, ModelSource, SourceKind
    from engine.chat.session import ChatSession
    from engine.chat.spec import ChatSpec
    from engine.xtuner.templates import template
    from tui.app import XtuiApp
    from tui.messages import ChatDelta
    from tui.screens.chat import ChatScreen

    stamps: list[tuple[float, int]] = []

    class TimedChat(ChatScreen):
        def on_chat_delta(self, message: ChatDelta) -> None:  # then ChatScreen's own (Textual calls both)
            stamps.append((time.perf_counter(), message.tokens))

    app = XtuiApp(roots=[model_dir.parent])
    async with app.run_test(size=(120, 40)) as pilot:
        source = ModelSource(SourceKind.BASE, model=model_dir)
        screen = TimedChat(ChatSpec(source, LoadOptions(device=device, decoder=mode), TEMPLATE))
        app.push_screen(screen)
        while screen.loaded is None:
            await pilot.pause(0.2)
        loaded = screen.loaded
        loaded.eos_ids = lambda: []
        sampling = Sampling(temperature=0, max_new_tokens=new_tokens)
        for session in screen.sessions:
            session.sampling = sampling
            session.stop_words = lambda: ()
        alone = ChatSession(loaded, template(TEMPLATE), sampling=sampling)
        alone.stop_words = lambda: ()

        async def pane() -> dict:
            stamps.clear()
            screen.query_one("#prompt").value = PROMPT
            asked, ui_cpu = time.perf_counter(), time.thread_time()
            await pilot.press("enter")
            while screen.busy or not stamps:
                await asyncio.sleep(0.05)  # not pilot.pause: it walks every widget and forces a repaint
            (t0, n0), (t1, n1) = stamps[0], stamps[-1]
            ui_ms = 1000 * (time.thread_time() - ui_cpu)  # this loop runs on the UI thread
            screen.action_reset()
            return {"first_text_ms": 1000 * (t0 - asked), "pane_tok_s": (n1 - n0) / (t1 - t0), "updates": len(stamps),
                    "ui_cpu_ms_per_update": ui_ms / len(stamps), "ui_cpu_share": ui_ms / 1000 / (time.perf_counter() - asked)}  # fmt: skip

        async def engine() -> dict:
            alone.reset()
            for _ in alone.reply(PROMPT):
                pass
            return {"engine_tok_s": alone.last.tokens_per_s}

        async def plain() -> dict:
            return {"plain_tok_s": plain_generate(loaded.model, loaded.tokenizer, device, new_tokens, 1)["tok_s"]}

        paths = [pane, engine, plain] if paired else [pane]
        await pane()  # warm-up
        runs = []
        for n in range(repeats):
            run: dict = {}
            for path in paths[n % len(paths) :] + paths[: n % len(paths)]:  # each path first in turn
                run.update(await path())
            runs.append(run)
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    if paired:
        result["pairs"] = runs
        result["pane_x_plain"] = [r["pane_tok_s"] / r["plain_tok_s"] for r in runs]
        result["engine_x_plain"] = [r["engine_tok_s"] / r["plain_tok_s"] for r in runs]
    return result


BANDWIDTH_LIMIT = 1270  # tok/s: the 1.89B model's fp16 weights read once per token at the H200's memory bandwidth


def replay_rate(decoder, steps: int = 200) -> float | None:
    """Greedy steps a second with nothing read back: the GPU-bound rate of a graph decoder (None without CUDA)."""
    import torch

    if not getattr(decoder, "depth", 1) > 1:
        return None
    with torch.inference_mode():
        token = decoder.prefill(input_ids=torch.zeros((1, 1), dtype=torch.long, device=decoder._device)).argmax(-1)
        token = decoder.greedy(token)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            token = decoder.greedy(token)
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def determinism(decoder, tokenizer, device: str, new_tokens: int) -> dict:
    """The same greedy answer twice straight on `decoder`: are the prefill's logits and the answer's ids the same?"""
    import torch

    from engine.chat.decoding import Sampling
    from engine.chat.generation import Generation

    ids = _prompt_ids(tokenizer, device)
    with torch.inference_mode():
        logits = [decoder.prefill(input_ids=ids).float().clone() for _ in range(2)]
    answers = []
    for _ in range(2):
        generation = Generation(
            decoder, tokenizer, {"input_ids": ids}, Sampling(temperature=0, max_new_tokens=new_tokens)
        )
        for _ in generation:
            pass
        answers.append(generation.stream.ids)
    return {"prefill_logits_equal": bool(torch.equal(*logits)),
            "prefill_max_abs_diff": float((logits[0] - logits[1]).abs().max()),
            "answer_divergence": _divergence(*answers)}  # fmt: skip


def top2_margins(decoder, ids: list[int], prompt) -> list[float]:
    """The top-2 logit margin of `decoder` at each token of the answer `ids` to `prompt`, fed those ids."""
    import torch

    margins = []
    with torch.inference_mode():
        logits = decoder.prefill(input_ids=prompt)
        for token in ids:
            top = logits.float().topk(2).values[0]
            margins.append(float(top[0] - top[1]))
            logits = decoder.step(torch.tensor([token], device=prompt.device))
    return margins


def _divergence(a: list[int], b: list[int]) -> int | None:
    """The first token index where two answers differ (None when identical)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


async def _switch(model_dir: Path, device: str, new_tokens: int, after: int, budget_s: float, repeats: int) -> dict:
    """`--decoder auto` in the pane from the moment the model is loaded: the first answer on the quick decoder at once,
    then the same question again (history reset) every turn while torch.compile runs in the background, until the
    compiled decoder has answered `after` turns. Per turn: the decoder, tok/s in the pane and in the engine, first
    text after Enter; then the engine alone (the UI idle) and the graphs' GPU-bound replay rates.

    On a CPU dynamo with its eager backend stands in for inductor (a smoke run of this script).
    """
    from engine.chat import decoding
    from engine.chat.decoding import Sampling
    from engine.chat.models import LoadOptions, ModelSource, SourceKind
    from engine.chat.session import ChatSession
    from engine.chat.spec import ChatSpec
    from engine.xtuner.templates import template
    from tui.app import XtuiApp
    from tui.messages import ChatDelta, ModelReady
    from tui.screens.chat import ChatScreen

    stamps: list[tuple[float, int]] = []
    marks: dict[str, float] = {}

    class TimedChat(ChatScreen):  # each handler here runs before ChatScreen's own (Textual calls both)
        def on_model_ready(self, message: ModelReady) -> None:
            marks["ready"] = time.perf_counter()
            if not device.startswith("cuda"):
                model = message.loaded.model
                build = lambda stop: decoding.compiled(model, {"backend": "eager", "fullgraph": True}, stop)  # noqa: E731
                message.loaded.decoder = decoding.SwitchingDecoder(decoding.EagerDecoder(model), build)
                message.loaded.decoder.warm_up()

        def on_input_submitted(self, _) -> None:
            marks["submitted"] = time.perf_counter()

        def on_chat_delta(self, message: ChatDelta) -> None:
            stamps.append((time.perf_counter(), message.tokens))

    sampling = Sampling(temperature=0, max_new_tokens=new_tokens)
    app = XtuiApp(roots=[model_dir.parent])
    turns: list[dict] = []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = TimedChat(
            ChatSpec(ModelSource(SourceKind.BASE, model=model_dir), LoadOptions(device=device), TEMPLATE)
        )
        pushed = time.perf_counter()
        app.push_screen(screen)
        while screen.loaded is None:
            await asyncio.sleep(0.01)
        loaded = screen.loaded
        loaded.eos_ids = lambda: []
        switching = loaded.decoder
        for session in screen.sessions:
            session.sampling = sampling
            session.stop_words = lambda: ()
        begin = time.perf_counter()
        while time.perf_counter() - begin < budget_s:
            compiled_turns = sum(t["decoder"] == "compiled" for t in turns)
            if compiled_turns >= after:
                break
            stamps.clear()
            screen.query_one("#prompt").value = PROMPT
            asked = time.perf_counter()
            await pilot.press("enter")
            while screen.busy or not stamps:
                await asyncio.sleep(0.005)
            last = screen.sessions[0].last
            (t0, n0), (t1, n1) = stamps[0], stamps[-1]
            turns.append({
                "turn": len(turns) + 1, "decoder": switching.live.name, "status_after": switching.status,
                "pane_tok_s": (n1 - n0) / (t1 - t0) if t1 > t0 else None, "engine_tok_s": last.tokens_per_s,
                "first_text_ms": 1000 * (t0 - asked), "first_text_from_submit_ms": 1000 * (t0 - marks["submitted"]),
                "engine_first_token_ms": 1000 * last.first_token_s, "updates": len(stamps),
                "since_loaded_s": asked - marks["ready"], "ids": list(last.stream.ids),
            })  # fmt: skip
            if len(turns) == 1:
                loaded_to_first_text_ms = 1000 * (t0 - marks["ready"])
            screen.action_reset()
            if switching.live is switching.quick:
                await asyncio.sleep(1.0)  # a turn a second or so while compiling
        alone = ChatSession(loaded, template(TEMPLATE), sampling=sampling)
        alone.stop_words = lambda: ()
        engine_alone = []
        for _ in range(repeats):
            alone.reset()
            for _ in alone.reply(PROMPT):
                pass
            engine_alone.append(alone.last.tokens_per_s)
        replay = {"quick": replay_rate(switching.quick)}
        repeat = {"quick": determinism(switching.quick, loaded.tokenizer, device, new_tokens)}
        parting = None
        if switching.built is not None and turns[0]["ids"] != turns[-1]["ids"]:  # the margins where the answers part
            split = _divergence(turns[0]["ids"], turns[-1]["ids"])
            alone.reset()
            prompt = alone.ask(PROMPT).prompt["input_ids"]  # the pane's prompt (the history was reset every turn)
            parting = {name: top2_margins(d, turns[0]["ids"][: split + 1], prompt)[split]
                       for name, d in (("quick", switching.quick), ("compiled", switching.built))}  # fmt: skip
        if switching.built is not None:
            replay["compiled"] = replay_rate(switching.built)
            repeat["compiled"] = determinism(switching.built, loaded.tokenizer, device, new_tokens)
    quick_ids = [t["ids"] for t in turns if t["decoder"] != "compiled"]
    compiled_ids = [t["ids"] for t in turns if t["decoder"] == "compiled"]
    done = [t for t in turns if t["decoder"] == "compiled"]
    med = lambda key, rows: statistics.median(r[key] for r in rows) if rows else None  # noqa: E731
    pane, engine = med("pane_tok_s", done), statistics.median(engine_alone)
    summary = {
        "load_s": marks["ready"] - pushed, "loaded_to_first_text_ms": loaded_to_first_text_ms,
        "first_answer_decoder": turns[0]["decoder"], "switched_at_turn": switching.switched_at,
        "build_s": switching.build_s, "build_failure": switching.failure,
        "compiled_in_a_child_first": getattr(switching.built, "compiled_elsewhere", None),
        "child_log_tail": decoding.CHILD_LOG.read_text(errors="replace")[-1500:] if decoding.CHILD_LOG.is_file() else None,
        "pane_tok_s": pane, "engine_in_pane_tok_s": med("engine_tok_s", done), "engine_alone_tok_s": engine,
        "pane_over_engine": pane / engine if pane and engine else None,
        "first_text_after_enter_ms": med("first_text_ms", done),
        "first_text_from_submit_ms": med("first_text_from_submit_ms", done),
        "pane_fraction_of_bandwidth_limit": pane / BANDWIDTH_LIMIT if pane else None,
        "engine_fraction_of_bandwidth_limit": engine / BANDWIDTH_LIMIT if engine else None,
        "replay_steps_s": replay,
        "greedy_identical_across_switch": bool(quick_ids and compiled_ids) and quick_ids[0] == compiled_ids[0],
        "first_divergence_token": _divergence(quick_ids[0], compiled_ids[0]) if quick_ids and compiled_ids else None,
        "top2_margin_at_divergence": parting,  # each decoder's, fed the graph decoder's answer up to there
        "quick_answers_all_same": all(i == quick_ids[0] for i in quick_ids),
        "compiled_answers_all_same": all(i == compiled_ids[0] for i in compiled_ids),
        "same_answer_twice_straight": repeat,
        "compile_options": decoding.COMPILE, "depth": decoding.GPU_DEPTH,
    }  # fmt: skip
    summary["goals"] = {
        "first_answer_within_5_s": loaded_to_first_text_ms < 5000,
        "pane_500_tok_s": bool(pane and pane >= 500),
        "pane_95_percent_of_engine": bool(summary["pane_over_engine"] and summary["pane_over_engine"] >= 0.95),
        "first_text_under_40_ms": bool(summary["first_text_after_enter_ms"] and summary["first_text_after_enter_ms"] < 40),
        "greedy_identical": summary["greedy_identical_across_switch"],
    }  # fmt: skip
    for t in turns:  # each answer against the first of its decoder, and the first of all
        first = quick_ids[0] if t["decoder"] != "compiled" else compiled_ids[0]
        t["divergence_from_decoders_first"] = _divergence(t["ids"], first)
        t["divergence_from_turn_1"] = _divergence(t["ids"], quick_ids[0])
    for t in turns:
        t["ids"] = len(t["ids"])
    return {"summary": summary, "turns": turns, "engine_alone_tok_s": engine_alone}


def visible_vocab(model_dir: Path, out_dir: Path) -> Path:
    """A copy whose output head never picks ids beyond the tokenizer (they decode to nothing: no text to see)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").is_file():
        return out_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float16, device_map="cuda")
    with torch.no_grad():
        model.lm_head.weight[len(tokenizer) :] = 0
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def small_cpu_model(model_dir: Path, demo_model: Path) -> Path:
    """A random float32 Llama of SMALL_SHAPE with the demo's tokenizer, saved into `model_dir` (once)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.files import build_folder

    if (model_dir / "config.json").is_file():
        return model_dir

    def fill(staging: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(demo_model)
        tokenizer.save_pretrained(staging)
        config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=False, torch_dtype="float32", **SMALL_SHAPE)
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(staging, safe_serialization=True)

    return build_folder(model_dir, fill)


def _busy_s() -> float:
    """CPU seconds every process on this machine has used since boot (Linux /proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def measure(model_dir: Path, gpu: bool, args) -> dict:
    """Every path not skipped, once; `other_cpu_share`: the machine's CPU used by other processes meanwhile."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    busy, own, wall = _busy_s(), sum(os.times()[:4]), time.perf_counter()
    result: dict = {}
    dtype = torch.float16 if gpu else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(args.device).eval()
    if "plain" not in args.skip:
        result["plain_generate"] = plain_generate(model, tokenizer, args.device, args.new_tokens, args.repeats)
    if "streamer" not in args.skip:
        result["generate_streamer_thread"] = streamer_thread(model, tokenizer, args.device, args.new_tokens)
    del model
    torch.cuda.empty_cache()
    for mode in ("eager", "graph", "compile") if gpu else ("eager",):
        if mode not in args.skip:
            result[f"xtui_{mode}"] = xtui_chat(model_dir, args.device, args.new_tokens, args.repeats, mode)
    for mode in ("graph", "compile") if gpu else ("eager",):
        if f"pane-{mode}" not in args.skip:
            result[f"pane_{mode}"] = asyncio.run(
                _pane(model_dir, args.device, args.new_tokens, args.repeats, mode, args.paired)
            )
    if "xtuner" not in args.skip:
        result["xtuner_chat"] = xtuner_chat(model_dir, args.new_tokens, "fp16" if gpu else "fp32")
    others = _busy_s() - busy - (sum(os.times()[:4]) - own)
    result["other_cpu_share"] = others / ((time.perf_counter() - wall) * os.cpu_count())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/chat-bench"))
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument(
        "--cpu-model", choices=("tiny", "small"), default="tiny", help="tiny: the demo's 1.6M model; small: 142M"
    )
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--paired",
        action="store_true",
        help="CPU: also time plain generate and the engine between the pane's answers (a shared machine)",
    )
    parser.add_argument(
        "--switch",
        action="store_true",
        help="only `--decoder auto` in the pane from load: answers across the switch to the compiled decoder",
    )
    parser.add_argument("--after", type=int, default=4, help="--switch: turns the compiled decoder answers")
    parser.add_argument("--budget-s", type=float, default=420, help="--switch: give up waiting for the compile after")
    parser.add_argument("--compile-mode", help="--switch: torch.compile's mode (a no-cudagraphs one)")
    parser.add_argument("--depth", type=int, help="--switch: steps queued ahead of the token read")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="parts to leave out: plain streamer xtuner eager graph compile pane-graph pane-compile pane-eager",
    )
    args = parser.parse_args()

    import torch

    from engine.demo import build as demo

    gpu = args.device.startswith("cuda")
    if gpu:
        from benchmarks.gpu_train import build_model

        model_dir = args.folder / "m18"
        if not (model_dir / "config.json").is_file():
            build_model(model_dir, demo._texts(demo.build_demo(args.folder / "demo").data))
        model_dir = visible_vocab(model_dir, args.folder / "m18-visible")
    else:
        model_dir = demo.build_demo(args.folder / "demo").model
        if args.cpu_model == "small":
            model_dir = small_cpu_model(args.folder / "small-cpu", model_dir)
    result: dict = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "new_tokens": args.new_tokens, "model": str(model_dir)}  # fmt: skip
    if args.switch:
        from engine.chat import decoding

        if args.compile_mode:
            decoding.COMPILE["mode"] = args.compile_mode
        if args.depth:
            decoding.GPU_DEPTH = args.depth
        result.update(
            asyncio.run(_switch(model_dir, args.device, args.new_tokens, args.after, args.budget_s, args.repeats))
        )
    else:
        result.update(measure(model_dir, gpu, args))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
