"""Token-by-token decoding of a Hugging Face causal LM: an eager loop; static-cache steps replayed as CUDA graphs,
compiled or not; and a decoder that answers on a quick one while the compiled one is built in the background."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.chat import kv_cache
from engine.errors import ChatError

# Positions the static cache holds: 4096 is ~400 MB for a 1.8B model with 8 KV heads in fp16.
STATIC_CAPACITY = 4096
# torch.compile's options for the compiled step: autotuned kernels, no CUDA graphs of its own (we capture the step,
# with its argmax and position update, as one graph: no per-call Python of cudagraph trees)
COMPILE = {"mode": "max-autotune-no-cudagraphs", "fullgraph": True}
# One CUDA-graph capture in the process at a time, and none while a build's compile runs on the GPU: another
# thread's device-wide sync or free (inductor's autotuning, a model loaded or dropped) invalidates a capture.
CAPTURES = threading.RLock()
CHILD_LOG = Path(tempfile.gettempdir(), "xtui-compile-child.log")  # compile_elsewhere's last child's output
GPU_DEPTH = 8  # steps a graph decoder keeps queued on the GPU ahead of the token read (~15 ms at 500 tok/s)
PROMPT_BUCKETS = (32, 64, 128, 256)  # prompt lengths a static decoder pads to (a CUDA graph each); longer: as is
FIRST_SPAN = 256  # the static cache's shortest span a step reads; each next one doubles, up to the capacity


class ContextFull(ChatError):
    """The prompt and the answer would not fit in the model's context."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings, with `xtuner chat`'s defaults; temperature 0 means greedy."""

    temperature: float = 0.1
    top_p: float = 0.75
    top_k: int = 40
    max_new_tokens: int = 512
    repetition_penalty: float = 1.0
    seed: int = 0

    def problems(self) -> list[str]:
        """What is out of range, as sentences (empty when all is well)."""
        found = []
        if not 0 <= self.temperature <= 100:
            found.append("temperature must be between 0 and 100")
        if not 0 < self.top_p <= 1:
            found.append("top-p must be above 0 and at most 1")
        if self.top_k < 0:
            found.append("top-k must be 0 (off) or more")
        if self.max_new_tokens < 1:
            found.append("max new tokens must be at least 1")
        if self.repetition_penalty <= 0:
            found.append("repetition penalty must be above 0")
        return found


def choose(logits, seen, sampling: Sampling, generator):
    """The next token id (a 1-element tensor) from last-position `logits` of shape (1, vocab)."""
    import torch

    logits = logits.float()
    if sampling.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / sampling.repetition_penalty, logits * sampling.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs > sampling.top_p
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[..., 0]


def spans(capacity: int) -> list[int]:
    """The spans of a static cache of `capacity` positions: FIRST_SPAN doubling, the capacity last."""
    found = [FIRST_SPAN]
    while found[-1] < capacity:
        found.append(found[-1] * 2)
    return [n for n in found if n < capacity] + [capacity]


def context_length(model) -> int:
    """How many positions the model takes (its config's max_position_embeddings), 4096 when unknown."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 4096)


class Decoder:
    """What a Generation drives: a prefill, then one step per token; `answering` holds the one that answers."""

    name = "eager"
    depth = 1  # steps queued ahead of the token the host reads (more only where steps run asynchronously)
    building = False  # a faster decoder is being made in the background
    key: str | None = None  # the variant answering (LoadedModel.variant sets it)
    capacity: int

    @property
    def status(self) -> str:
        """Which decoder answers, in a word or three (the chat's status line)."""
        return self.name

    @contextmanager
    def answering(self) -> Iterator[Decoder]:
        """The decoder that answers the next question, for the whole answer: this one."""
        yield self

    def warm_up(self, steps: int = 4) -> None:
        """Compile and capture now, not in the first answer (nothing to do here)."""

    def close(self, timeout: float | None = None) -> bool:
        """Stop what runs in the background for this decoder (nothing here); whether it has ended."""
        return True

    def greedy(self, token):
        """Feed one token id; the most likely next one (a device tensor of one id)."""
        return self.step(token).argmax(-1)


class EagerDecoder(Decoder):
    """Plain forward calls with a growing KV cache: what HF `generate` does, with fewer copies per token (kv_cache)."""

    def __init__(self, model) -> None:
        kv_cache.use_grouped_attention(model)
        self.model = model
        self.capacity = context_length(model)
        self.key: str | None = None  # unused here: every call runs the model as it is
        self._cache = None
        self._length = 0

    def prefill(self, input_ids=None, inputs_embeds=None):
        """Run the prompt; the last position's logits."""
        self._cache = kv_cache.growing_cache()
        out = self.model(
            input_ids=input_ids, inputs_embeds=inputs_embeds, past_key_values=self._cache, use_cache=True,
            num_logits_to_keep=1,
        )  # fmt: skip
        self._length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        return out.logits[:, -1]

    def step(self, token):
        """Feed one token id; the logits for the one after it."""
        out = self.model(input_ids=token.view(1, 1), past_key_values=self._cache, use_cache=True)
        self._length += 1
        return out.logits[:, -1]


class StaticDecoder(Decoder):
    """A fixed-size KV cache and a one-token step, replayed as a CUDA graph on a GPU: the fast path.

    The step runs the model, moves the position on and leaves the most likely next id in its input buffer, so that
    greedy decoding replays the graph and nothing else. It reads only the cache's first `span` positions (spans(): a
    graph each), not all `capacity`. A prompt of up to 256 tokens is padded to a PROMPT_BUCKETS length and prefilled
    by a graph too (the padding's positions come after the prompt's, which never see them, and the steps overwrite
    them). mode "graph" captures the eager step once per variant (`key`: an adapter
    switched on or off changes the kernels); mode "compile" captures the step torch.compile made (`compile_options`,
    COMPILE by default; the span is a dynamic size, one compile for all). Without CUDA the step just runs.
    """

    def __init__(self, model, mode: str = "graph", capacity: int | None = None, compile_options=None) -> None:
        import torch
        from transformers import StaticCache

        kv_cache.use_grouped_attention(model)  # the attention that reads a span, not the whole cache
        self.model = model
        self.mode = mode
        self.name = "compiled" if mode == "compile" else "graph"
        self.capacity = min(capacity or STATIC_CAPACITY, context_length(model))
        weights = next(model.parameters())
        self._cache = StaticCache(
            config=model.config, max_batch_size=1, max_cache_len=self.capacity, device=weights.device,
            dtype=weights.dtype,
        )  # fmt: skip
        self._device = weights.device
        self._graphed = self._device.type == "cuda"
        self.depth = GPU_DEPTH if self._graphed else 1
        self._token = torch.zeros((1, 1), dtype=torch.long, device=self._device)
        self._position = torch.zeros(1, dtype=torch.long, device=self._device)
        self._length = 0  # the position the next step writes, known here without reading the device
        self._spanned = kv_cache.reads_spans(model)
        lengths = spans(self.capacity) if self._spanned else [self.capacity]
        self._spans = {n: torch.empty(n, device=self._device) for n in lengths}  # only their sizes matter
        self._graphs: dict = {}  # (key, span or ("prompt", bucket)) -> (CUDAGraph, its output logits)
        buckets = [n for n in PROMPT_BUCKETS if n <= self.capacity]
        self._prompts = {n: torch.zeros((1, n), dtype=torch.long, device=self._device) for n in buckets}
        self._positions = torch.arange(PROMPT_BUCKETS[-1], device=self._device)
        self.compiled_elsewhere = False  # a child process compiled the step first (compiled())
        self.key: str | None = None
        self._forward = self._forward_one
        if mode == "compile":
            for span in self._spans.values():
                torch._dynamo.maybe_mark_dynamic(span, 0)  # one compile for all spans, unless inductor says not
            self._forward = torch.compile(self._forward_one, **(compile_options or COMPILE))

    def _forward_one(self, token, position, span):
        extra = {"kv_span": span} if self._spanned else {}
        return self.model(
            input_ids=token, past_key_values=self._cache, cache_position=position, use_cache=True, **extra
        ).logits[:, -1]

    def _span(self, positions: int | None = None) -> int:
        """The first span that holds `positions` (by default the next step's: up to the position it writes)."""
        return next(n for n in self._spans if n >= (self._length + 1 if positions is None else positions))

    def _body(self, span: int):
        """One step from the input buffers: the logits; the position moved on and the argmax left as the next input."""
        logits = self._forward(self._token, self._position, self._spans[span])
        self._position.add_(1)
        self._token.copy_(logits.argmax(-1).view(1, 1))
        return logits

    def _extra(self, positions: int) -> dict:
        return {"kv_span": self._spans[self._span(positions)]} if self._spanned else {}

    def _prompt(self, bucket: int):
        """Prefill the reset cache from the prompt buffer of `bucket` tokens; the logits of every position."""
        self._cache.reset()
        return self.model(
            input_ids=self._prompts[bucket], past_key_values=self._cache, use_cache=True,
            cache_position=self._positions[:bucket], **self._extra(bucket),
        ).logits  # fmt: skip

    def prefill(self, input_ids=None, inputs_embeds=None):
        """Run the prompt into the reset cache (padded to a bucket, as a graph once captured; else eagerly as it
        is), reading the span that holds it; the last position's logits."""
        import torch

        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        bucket = next((n for n in self._prompts if n >= length), None) if input_ids is not None else None
        if bucket is not None:
            self._prompts[bucket][:, :length].copy_(input_ids)
            graph = self._graphs.get((self.key, ("prompt", bucket)))  # never captured here: an answer may be on
            if graph is not None:
                graph[0].replay()
            logits = (graph[1] if graph is not None else self._prompt(bucket))[:, length - 1]
        else:
            self._cache.reset()
            logits = self.model(
                input_ids=input_ids, inputs_embeds=inputs_embeds, past_key_values=self._cache, use_cache=True,
                cache_position=torch.arange(length, device=self._device), num_logits_to_keep=1, **self._extra(length),
            ).logits[:, -1]  # fmt: skip
        self._position.fill_(length)
        self._length = length
        return logits

    def captured(self, key: str | None) -> bool:
        """Whether steps for `key` replay without capturing (or compiling) first."""
        return not self._graphed or all((key, n) in self._graphs for n in self._spans)

    def _graph(self, span: int):
        """The captured step for the current key and `span` (captured on first use)."""
        return self._capture(span, lambda: self._body(span))

    def _capture(self, what, run):
        """The CUDA graph of `run()` for the current key and `what` (captured on first use: warm-up on a side
        stream, then record); its output."""
        import torch

        if (self.key, what) not in self._graphs:
            saved = self._position.clone(), self._token.clone()
            side = torch.cuda.Stream(self._device)
            side.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    run()
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with CAPTURES, torch.cuda.graph(graph, capture_error_mode="thread_local"):  # others may launch meanwhile
                out = run()
            self._graphs[self.key, what] = (graph, out)
            self._position.copy_(saved[0])
            self._token.copy_(saved[1])
        return self._graphs[self.key, what]

    def step(self, token):
        """Feed one token id (a device tensor, no sync); the logits for the one after it."""
        if token.data_ptr() != self._token.data_ptr():  # greedy decoding feeds back the buffer the step filled
            self._token.copy_(token.view(1, 1))
        span = self._span()
        self._length += 1
        if not self._graphed:
            return self._body(span)
        graph, logits = self._graph(span)
        graph.replay()
        return logits

    def greedy(self, token):
        """Feed one token id; the most likely next one, chosen inside the step (the input buffer: read it now)."""
        self.step(token)
        return self._token.view(1)

    def warm_up(self, steps: int = 4) -> None:
        """Run a scratch prompt and a few steps so that compiling and the capture of every span and prompt bucket
        happen now."""
        import torch

        with torch.inference_mode():
            self.prefill(input_ids=torch.zeros((1, 1), dtype=torch.long, device=self._device))
            for _ in range(steps):
                self.step(self._token)
            if self._graphed:
                for span in self._spans:
                    self._graph(span)
                for bucket in self._prompts:
                    self._capture(("prompt", bucket), lambda bucket=bucket: self._prompt(bucket))

    def compile_now(self, steps: int = 2) -> None:
        """Run uncaptured steps of every span on a scratch prompt: torch.compile's work (all of it, whatever it
        specialises), safe beside another decoder's answer."""
        import torch

        with torch.inference_mode():
            self.prefill(input_ids=torch.zeros((1, 1), dtype=torch.long, device=self._device))
            for span in self._spans:
                for _ in range(steps):
                    self._body(span)


class BuildStopped(Exception):
    """The background build was stopped (`SwitchingDecoder.close`)."""


class SwitchingDecoder(Decoder):
    """Answers on a quick decoder while `build` makes a faster one in a background thread; switches between answers.

    `build(stop)` does the slow part (torch.compile) beside the live answers: its own cache and buffers, the weights
    only read; it gives up (BuildStopped) once `stop` is set. Its graph is captured holding the lock that every answer
    holds, so nothing else runs on the device then, and the built decoder takes over at the next answer, never
    within one (for the variants it has captured).
    """

    def __init__(self, quick: Decoder, build: Callable[[threading.Event], Decoder]) -> None:
        self.quick = quick
        self.live = quick
        self.built: Decoder | None = None
        self.failure: str | None = None
        self.answers = 0
        self.switched_at: int | None = None  # the answer (counted from 1) the built decoder first gave
        self.build_s: float | None = None  # how long the build took, its wait for the end of an answer included
        self._build = build
        self._key: str | None = None
        self._turn = threading.Lock()  # held through each answer, and while the built decoder is captured
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._make, name="xtui-decoder-build", daemon=True)

    @property
    def key(self) -> str | None:
        return self._key

    @key.setter
    def key(self, name: str | None) -> None:
        self._key = self.quick.key = name
        if self.built is not None:
            self.built.key = name

    @property
    def capacity(self) -> int:
        return self.live.capacity

    @property
    def depth(self) -> int:
        return self.live.depth

    @property
    def building(self) -> bool:
        return self._thread.is_alive()

    @property
    def status(self) -> str:
        if self.live is not self.quick:
            return self.live.status
        if self.failure is not None:
            return f"{self.quick.status} (compile failed)"
        if self.built is not None:
            return f"{self.quick.status} (compiled: next answer)"
        return f"{self.quick.status} (compiling…)"

    def warm_up(self, steps: int = 4) -> None:
        """Warm the quick decoder, then start building the other in the background."""
        self.quick.warm_up(steps)
        if not self._thread.is_alive() and self.built is None and self.failure is None:
            self._thread.start()

    def _make(self) -> None:
        start = time.perf_counter()
        try:
            with _own_stream(self.quick):  # the build's GPU work does not queue up before the answers' steps
                made = self._build(self._stop)
                with self._turn:  # between answers: the capture has the device to itself
                    if self._stop.is_set():
                        raise BuildStopped
                    made.key = self._key
                    made.warm_up()
            self.build_s = time.perf_counter() - start
            self.built = made
        except BuildStopped:
            pass
        except Exception as exc:  # inductor/triton errors have no common base class; the quick decoder goes on
            self.failure = f"{type(exc).__name__}: {exc}"

    def close(self, timeout: float | None = None) -> bool:
        """Stop the background build (its child process at once, a compile in this process when it ends) and wait
        up to `timeout` s for it (0: do not wait); whether it has ended."""
        self._stop.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background build to end; whether it did."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @contextmanager
    def answering(self) -> Iterator[Decoder]:
        """The built decoder when it is ready for this variant, else the quick one; held for the whole answer."""
        with self._turn:
            built = self.built
            self.answers += 1
            self.live = built if built is not None and built.captured(self._key) else self.quick
            if self.live is built and self.switched_at is None:
                self.switched_at = self.answers
            with self.live.answering() as decoder:
                yield decoder


@contextmanager
def _own_stream(decoder: Decoder) -> Iterator[None]:
    """A CUDA stream of this thread's own meanwhile, when `decoder` runs on CUDA; all of it done at the end."""
    device = getattr(decoder, "_device", None)
    if device is None or device.type != "cuda":
        yield
        return
    import torch

    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        yield
    stream.synchronize()


DECODERS = ("auto", "eager", "graph", "compile")


def compiles_elsewhere(model) -> bool:
    """Whether a child process can load the same model to compile it: a transformers model saved in a folder."""
    folder = getattr(model.config, "_name_or_path", "")
    return Path(folder, "config.json").is_file() and type(model).__module__.startswith("transformers.")


def compile_elsewhere(model, compile_options=None, stop: threading.Event | None = None, timeout_s: float = 900) -> bool:
    """Compile the same model's step in a child process (niced) first, filling torch.compile's caches on disk, so that
    compiling here loads code instead of generating it: inductor's minutes of Python never hold this process's GIL
    while it answers. Killed when `stop` is set; whether the child got through."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    if not compiles_elsewhere(model):
        return False
    folder = model.config._name_or_path
    weights = next(model.parameters())
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    dtype, options = str(weights.dtype).removeprefix("torch."), json.dumps(compile_options or COMPILE)
    command = [
        sys.executable,
        "-m",
        "engine.chat.decoding",
        str(os.getpid()),
        folder,
        dtype,
        str(weights.device),
        options,
    ]
    nice = shutil.which("nice")
    try:
        with open(CHILD_LOG, "wb") as log:  # the last child's output, for when it fails
            child = subprocess.Popen([nice, "-n", "10", *command] if nice else command, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
    except OSError:
        return False
    deadline, stop = time.monotonic() + timeout_s, stop or threading.Event()
    while child.poll() is None:
        if stop.wait(0.2) or time.monotonic() > deadline:
            child.kill()
            child.wait()
            return False
    return child.returncode == 0


def compiled(model, compile_options=None, stop: threading.Event | None = None) -> StaticDecoder:
    """A compiled static decoder, its compiling done (not yet captured); on CUDA a child process compiles first
    (`compiled_elsewhere` says whether it got through; when not, this process did all the work).

    The part in this process holds CAPTURES: its GPU work (autotuning syncs the device) overlaps no capture.
    """
    elsewhere = next(model.parameters()).device.type == "cuda" and compile_elsewhere(model, compile_options, stop)
    if stop is not None and stop.is_set():
        raise BuildStopped
    with CAPTURES:
        decoder = StaticDecoder(model, "compile", compile_options=compile_options)
        decoder.compiled_elsewhere = elsewhere
        decoder.compile_now()
    return decoder


def make_decoder(model, mode: str = "auto"):
    """The decoder for `mode`; "auto" on CUDA answers with CUDA graphs at once and compiles in the background."""
    if mode not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)} (not {mode!r})")
    cuda = next(model.parameters()).device.type == "cuda"
    if mode == "auto" and not cuda:
        return EagerDecoder(model)
    if mode == "auto" and not compiles_elsewhere(model):  # an adapter, remote code: compiling here would stall answers
        return StaticDecoder(model, "graph")
    if mode == "auto":
        return SwitchingDecoder(StaticDecoder(model, "graph"), lambda stop: compiled(model, stop=stop))
    return EagerDecoder(model) if mode == "eager" else StaticDecoder(model, mode)


def warm_up(decoder, steps: int = 4) -> None:
    """Compile and capture now, not in the first answer (a switching decoder warms its quick one, then builds)."""
    decoder.warm_up(steps)


def _main(parent: str, folder: str, dtype: str, device: str, options: str) -> None:
    """compile_elsewhere's child: load the model as the parent did and compile its step for every span (ending
    when the parent process does, whatever way it ends)."""
    import json
    import os

    def orphaned() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    import torch
    from transformers import AutoModelForCausalLM

    placed = {"device_map": {"": device}} if device != "cpu" else {}
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype), **placed).eval()
    decoder = StaticDecoder(model, "compile", compile_options=json.loads(options))
    decoder.compile_now()


if __name__ == "__main__":
    import sys

    _main(*sys.argv[1:])
