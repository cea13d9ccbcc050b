"""The environment a run needs, checked one thing at a time, each problem with what to do about it.

Packages are imported in a subprocess of the interpreter xtui (and so the trainer) runs on: a broken package reports
its error here instead of breaking xtui.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from engine.gpu import NvmlBackend

GIB = 1024**3
PROBE_TIMEOUT_S = 180
DISK_FAIL = 1 * GIB
DISK_WARN = 20 * GIB  # a 7B model's fp16 weights and a checkpoint or two
BNB_FIX = "pip install --no-deps bitsandbytes==0.45.5"
NO_GPU = "no NVIDIA driver: training runs on the CPU only"
# Text a failure shows -> what to do; matched against a run's error, a converter's output, an import's error.
KNOWN_CAUSES = (
    ("No module named 'triton.ops'",
     f"bitsandbytes 0.45.0 (xtuner 0.2.0's pin) fails beside triton 3.x: {BNB_FIX}"),
    ("No module named 'deepspeed'", "DeepSpeed is not installed: pip install deepspeed, or launch without --deepspeed"),
    ("No module named 'flash_attn'", "flash-attn is not installed: pip install flash-attn --no-build-isolation"),
    ("has no attribute 'is_bf16_supported'",
     "xtuner calls torch.cpu.is_bf16_supported, which this torch lacks: add the line "
     "`setattr(__import__(\"torch\").cpu, \"is_bf16_supported\", lambda: False)` after the config's imports"),
    ("AmpOptimizerWrapper`` is only available",
     "AmpOptimWrapper needs a GPU: on the CPU use `optim_wrapper = dict(type=OptimWrapper, ...)` without loss_scale and dtype"),
    ("compiled without GPU support",
     "this bitsandbytes has no GPU support: 4-bit (QLoRA) needs a GPU and a CUDA build: "
     f"{BNB_FIX}, or drop quantization_config from the config"),
    ("end should be larger than begin, but got begin=0, end=0",
     "warmup_ratio x max_epochs x iterations per epoch rounds to 0 warm-up iterations (a short run or a small "
     "dataset): raise warmup_ratio, or give more data or epochs (xtui config check says how far)"),
    ("driver version is insufficient",
     "the NVIDIA driver is older than the CUDA this torch was built for: update the driver, or install a torch "
     "built for the CUDA the driver supports (xtui doctor shows both)"),
)  # fmt: skip
# Run in the probed interpreter: a package's version (from its metadata) and whether it imports, as one JSON line.
_PROBE = r"""
import importlib, importlib.metadata as md, json, sys
name, dist = sys.argv[1], sys.argv[2]
out = {}
try:
    out["version"] = md.version(dist)
except md.PackageNotFoundError:
    out["version"] = None
try:
    module = importlib.import_module(name)
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}".strip()
else:
    if name == "torch":
        out.update(cuda=module.version.cuda, gpu=module.cuda.is_available(), devices=module.cuda.device_count())
    if name == "bitsandbytes":
        lib = getattr(importlib.import_module("bitsandbytes.cextension"), "lib", None)
        out.update(gpu=bool(getattr(lib, "compiled_with_cuda", False)))
print(json.dumps(out))
"""


class CheckStatus(StrEnum):
    """How one check came out; the value is the word printed."""

    OK = "ok"
    WARN = "warn"  # works, with a limit worth knowing (no GPU, an optional package missing)
    FAIL = "fail"  # runs that need it will fail


@dataclass(frozen=True, slots=True)
class Check:
    """One thing a run needs: what it is, how it stands, what was found, and what to do about a problem."""

    name: str
    status: CheckStatus
    found: str
    fix: str = ""

    def to_json(self) -> dict:
        """Plain dict for `xtui doctor --json`."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Package:
    """A package runs may need: its import name, its distribution name, whether every run needs it, how to get it."""

    module: str
    dist: str
    needed: bool
    install: str


PACKAGES = {p.module: p for p in (
    Package("torch", "torch", True, "pip install torch (a build for your CUDA; see pytorch.org)"),
    Package("xtuner", "xtuner", True, "pip install xtuner==0.2.0"),
    Package("mmengine", "mmengine", True, "pip install mmengine"),
    Package("transformers", "transformers", True, "pip install transformers"),
    Package("peft", "peft", True, "pip install peft"),
    Package("bitsandbytes", "bitsandbytes", False, f"needed for 4-bit (QLoRA) configs: {BNB_FIX}"),
    Package("deepspeed", "deepspeed", False, "needed for --deepspeed: pip install deepspeed"),
    Package("flash_attn", "flash-attn", False, "optional, faster attention on recent GPUs: pip install flash-attn --no-build-isolation"),
)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Probe:
    """What importing one package in the probed interpreter gave."""

    version: str | None
    error: str | None = None
    facts: dict | None = None

    @property
    def imports(self) -> bool:
        """True when the package imported cleanly."""
        return self.error is None


def remedy(text: str) -> str | None:
    """What to do about a failure whose text shows a known environment cause, or None."""
    return next((fix for sign, fix in KNOWN_CAUSES if sign in text), None)


def with_remedy(message: str, detail: str = "") -> str:
    """`message` followed by what to do, when it (or its `detail`) shows a known environment cause."""
    fix = remedy(f"{message}\n{detail}")
    return f"{message}: {fix}" if fix and fix not in message else message


def probe(name: str, dist: str) -> Probe:
    """Import `name` in a subprocess of this interpreter: its version and its error, if any."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, name, dist], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Probe(None, f"importing {name} took more than {PROBE_TIMEOUT_S} s")
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return Probe(None, f"the import crashed the interpreter ({tail})")
    version, error = out.pop("version"), out.pop("error", None)
    return Probe(version, error, out)


def package_check(package: Package, gpus: int = 0) -> Check:
    """Whether `package` is there and imports (in a subprocess), given how many GPUs the driver shows."""
    found = probe(package.module, package.dist)
    if found.version is None and (found.error or "").startswith("ModuleNotFoundError"):
        return Check(
            package.dist, CheckStatus.FAIL if package.needed else CheckStatus.WARN, "not installed", package.install
        )
    if not found.imports:  # a broken package breaks more than itself (peft imports bitsandbytes, for one)
        fix = (
            remedy(found.error)
            or f"reinstall it: pip install --force-reinstall --no-deps {package.dist}=={found.version}"
        )
        return Check(package.dist, CheckStatus.FAIL, f"{found.version}: {found.error}", fix)
    facts = found.facts or {}
    if package.module == "torch":
        build = f"CUDA {facts['cuda']} build" if facts.get("cuda") else "CPU-only build"
        text = f"{found.version} ({build}; sees {facts.get('devices', 0)} GPU(s))"
        if gpus and not facts.get("gpu"):
            fix = "install a torch built for the CUDA the driver supports (pytorch.org lists the builds)"
            return Check(package.dist, CheckStatus.FAIL, f"{text}, while the driver shows {gpus}", fix)
        return Check(package.dist, CheckStatus.OK, text)
    if package.module == "bitsandbytes" and not facts.get("gpu"):
        if not gpus:
            return Check(
                package.dist,
                CheckStatus.WARN,
                f"{found.version}, no GPU support (no GPU here): 4-bit (QLoRA) needs a GPU",
            )
        return Check(
            package.dist, CheckStatus.FAIL, f"{found.version}, no GPU support", f"4-bit (QLoRA) fails: {BNB_FIX}"
        )
    return Check(package.dist, CheckStatus.OK, found.version or "imports (version unknown)")


def gpu_check() -> tuple[Check, int]:
    """The GPUs and their driver as NVML reports them, and how many there are."""
    gpus, error = NvmlBackend().read(with_processes=False)
    if not gpus and error and "driver" not in error:
        return Check("gpu", CheckStatus.WARN, f"{error}: GPUs cannot be read", "pip install nvidia-ml-py"), 0
    if not gpus:
        return Check("gpu", CheckStatus.WARN, NO_GPU), 0
    import pynvml

    names = sorted({g.name or "GPU" for g in gpus})
    memory = max((g.memory_total or 0) for g in gpus) / GIB
    try:
        driver, cuda = pynvml.nvmlSystemGetDriverVersion(), pynvml.nvmlSystemGetCudaDriverVersion()
        version = f"driver {driver.decode() if isinstance(driver, bytes) else driver}, CUDA {cuda // 1000}.{cuda % 1000 // 10}"
    except pynvml.NVMLError:
        version = "driver version unknown"
    return Check("gpu", CheckStatus.OK, f"{len(gpus)} x {', '.join(names)} ({memory:.0f} GiB), {version}"), len(gpus)


def disk_check(work_dir: Path) -> Check:
    """Free disk where the runs go (the nearest folder of `work_dir` that exists)."""
    folder = Path(work_dir).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    text = f"{free / GIB:.1f} GiB free in {folder}"
    if free < DISK_FAIL:
        return Check("disk", CheckStatus.FAIL, text, "free some space: checkpoints and converted models need gigabytes")
    if free < DISK_WARN:
        return Check(
            "disk", CheckStatus.WARN, text, "checkpoints of a 7B model take tens of GiB: keep save_total_limit low"
        )
    return Check("disk", CheckStatus.OK, text)


def python_check() -> Check:
    """The interpreter xtui and its runs use."""
    return Check("python", CheckStatus.OK, f"{'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")


def doctor(work_dir: Path | None = None) -> list[Check]:
    """Every check, in the order printed: Python, GPUs and driver, each package, free disk in `work_dir`."""
    gpu, gpus = gpu_check()
    with ThreadPoolExecutor(max_workers=4) as pool:
        packages = list(pool.map(lambda package: package_check(package, gpus), PACKAGES.values()))
    return [python_check(), gpu, *packages, disk_check(work_dir or Path.cwd())]


def loads_in_4bit(config: Path) -> bool:
    """True when a config loads its model in 4 bits (a `load_in_4bit=True` anywhere in it)."""
    try:
        tree = ast.parse(config.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return False
    return any(
        kw.arg == "load_in_4bit" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
    )  # fmt: skip


def launch_problems(config: Path, gpus: int, deepspeed: str | None) -> list[str]:
    """What this machine lacks for a launch of `config` on `gpus` GPUs (with DeepSpeed), as the doctor says it."""
    problems = []
    if deepspeed:
        found = package_check(PACKAGES["deepspeed"])
        if found.status is not CheckStatus.OK:
            problems.append(f"--deepspeed {deepspeed} needs DeepSpeed, which is {found.found} here: {found.fix}")
    four_bit = loads_in_4bit(config)
    present = gpu_check()[1] if gpus > 1 or four_bit else 0
    if gpus > 1 and gpus > present:
        problems.append(
            f"--gpus {gpus} asks for more GPUs than this machine has ({present}{f': {NO_GPU}' if not present else ''})"
        )
    if four_bit:
        found = package_check(PACKAGES["bitsandbytes"], present)
        if found.status is not CheckStatus.OK:
            fix = found.fix or "a GPU, or drop quantization_config from the config to train without 4 bits"
            problems.append(
                f"the config loads the model in 4 bits, which needs bitsandbytes with GPU support ({found.found}): {fix}"
            )
    return problems
