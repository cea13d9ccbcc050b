"""The launch form: configs of the project and XTuner's built-ins (a built-in name works as in `xtui train`), the memory
estimate against the GPUs' free memory, several nodes with each node's command, and Slurm only where sbatch is on
PATH, its script shown before it is submitted (through a stand-in sbatch: no Slurm controller runs here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Select, Static
from textual.widgets.select import InvalidSelectValueError

from engine.gpu import HISTORY, GpuMonitor, GpuReading, HostReading
from engine.runs.workdir import WorkDir
from engine.xtuner import configs
from tests.support.fakes import FakeGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.launch import NODES, SLURM, LaunchScreen, ScriptScreen
from tui.screens.run import RunScreen

pytestmark = pytest.mark.anyio
SIZES = [(80, 24), (120, 40)]
SNAPSHOT_ROOT = Path("/tmp/xtui-snapshot-launch")  # fixed: paths show on screen
CONFIG_JSON = {
    "architectures": ["LlamaForCausalLM"], "vocab_size": 92544, "hidden_size": 2048, "num_hidden_layers": 24,
    "intermediate_size": 8192, "num_attention_heads": 16, "num_key_value_heads": 8, "tie_word_embeddings": False,
    "torch_dtype": "float16",
}  # fmt: skip
SEED = "internlm2_1_8b_qlora_alpaca_e3"


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))


def project(root: Path) -> Path:
    """A project folder: a QLoRA config on a local model (its config.json only), a helper script, a config in a
    subfolder, and an old run whose work dir holds mmengine's copy of its config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text(json.dumps(CONFIG_JSON))
    source = configs.find_builtin(SEED).read_text(encoding="utf-8")
    source = configs.edit_settings(source, {"pretrained_model_name_or_path": repr("./model"), "max_length": "1024"})
    (root / "qlora.py").write_text(source)
    (root / "helper.py").write_text("print('not a config')\n")
    (root / "sub").mkdir()
    (root / "sub" / "other.py").write_text(source)
    shutil.copy(root / "qlora.py", fixture_run(root, "old-run") / "qlora.py")
    return root


def path_with_sbatch(tmp_path: Path, monkeypatch, present: bool) -> None:
    """PATH with a stand-in sbatch (prints a job id, as `sbatch --parsable` does) or with none at all."""
    kept = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "sbatch").exists()]
    if present:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "sbatch").write_text("#!/bin/sh\necho 4242\n")
        (bin_dir / "sbatch").chmod(0o755)
        kept.insert(0, str(bin_dir))
    monkeypatch.setenv("PATH", os.pathsep.join(kept))


class TightGpu:
    """One H200 with 4 GiB free."""

    def read(self, with_processes: bool):
        return [GpuReading(0, "NVIDIA H200", 137 << 30, 141 << 30, 99, 70, 600.0, 700.0)], None


async def open_form(pilot, app: XtuiApp) -> LaunchScreen:
    """The launch form once the GPUs were read and the configs found."""
    await until(pilot, lambda: app.gpu is not None)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen.choices)
    return app.screen


def text(form: LaunchScreen, selector: str) -> str:
    """What a Static of the form shows."""
    return str(form.query_one(selector, Static).render())


async def test_configs_of_the_project_and_builtins_and_a_builtin_name_works(tmp_path) -> None:
    root = project(tmp_path / "proj")
    app = XtuiApp(roots=[root], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        values = [value for value, _ in form.choices]
        assert values[:2] == ["qlora.py", "sub/other.py"]  # not helper.py, nor the old run's copy
        assert SEED in values and len(values) == 2 + len(configs.list_builtin())
        form.query_one("#config", Input).value = "internlm2_1_8b_QLORA"
        options = form.query_one("#configs", OptionList)
        await until(pilot, lambda: options.option_count == 1)
        assert not form.query_one("#config-found").display  # the list says it
        await pilot.press("tab", "enter")  # to the list, and pick
        assert form.query_one("#config", Input).value == SEED
        assert form.focused.id == "work-dir"
        builtin = configs.find_builtin(SEED)
        assert form.spec().config == builtin == configs.resolve_config(SEED)  # as `xtui train NAME` takes it
        assert f"XTuner's built-in: {builtin}" in text(form, "#config-found")
        assert f"-m xtuner.tools.train {builtin} --work-dir" in text(form, "#command").replace("\n", " ")
        await until(pilot, lambda: "not estimated" in text(form, "#memory"))  # its model is a hub id not here


async def test_no_command_before_a_config_is_picked(tmp_path) -> None:
    root = project(tmp_path / "proj")  # no config.py: the Config field starts empty
    app = XtuiApp(roots=[root], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        assert form.query_one("#config", Input).value == ""
        assert text(form, "#command") == "the command shows once a config is picked"  # not `train {root} --work-dir`
        form.query_one("#config", Input).value = "qlora.py"
        await until(pilot, lambda: f"-m xtuner.tools.train {root / 'qlora.py'}" in text(form, "#command"))


async def test_the_memory_estimate_against_the_gpus_free_memory(tmp_path) -> None:
    root = project(tmp_path / "proj")
    app = XtuiApp(roots=[root], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        form.query_one("#config", Input).value = "qlora.py"
        memory = form.query_one("#memory", Static)
        await until(pilot, lambda: "GPU 0 has 131.0 GiB free: fits" in text(form, "#memory"))
        assert "peak ~5.1 GiB per GPU for qlora r64, 1 x 1024 tokens" in text(form, "#memory")
        assert not memory.has_class("error")
        form.query_one("#deepspeed", Select).value = "deepspeed_zero2"
        form.query_one("#processes", Input).value = "2"
        await until(pilot, lambda: "ZeRO-2 on 2" in text(form, "#memory"))
    app = XtuiApp(roots=[root], gpu_backend=TightGpu(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        form.query_one("#config", Input).value = "qlora.py"
        await until(pilot, lambda: "GPU 0 has 4.0 GiB free: will not fit" in text(form, "#memory"))
        assert form.query_one("#memory", Static).has_class("error")


async def test_several_nodes_show_each_nodes_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "/usr/bin/python3")
    root = project(tmp_path / "proj")
    app = XtuiApp(roots=[root], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        assert not form.query_one("#nodes-fields").display
        form.query_one("#where", Select).value = NODES
        await pilot.pause()
        assert form.query_one("#nodes-fields").display and not form.query_one("#slurm-fields").display
        form.query_one("#config", Input).value = "qlora.py"
        form.query_one("#nnodes", Input).value = "2"
        await pilot.pause()
        assert "--master-addr NODE0_ADDRESS" in text(form, "#command").replace("\n", " ")  # until it is filled in
        for field, value in (("nnodes", "5"), ("node-rank", "4"), ("master-addr", "10.0.0.1")):
            form.query_one(f"#{field}", Input).value = value
        await pilot.pause()
        lines = text(form, "#command").replace("\n", " ")
        for rank in (0, 1, 2):
            assert f"node {rank}, to run there: $ /usr/bin/python3 -m torch.distributed.run --nnodes 5 --node-rank {rank} --master-addr 10.0.0.1" in lines  # fmt: skip
        assert "node 4 (this one): $" in lines and "node 3" not in lines and "... and so on to node 4" in lines
        spec = form.spec()
        assert (spec.nnodes, spec.node_rank, spec.master_addr, spec.master_port) == (5, 4, "10.0.0.1", 29500)


async def test_no_slurm_choice_without_sbatch_on_path(tmp_path, monkeypatch) -> None:
    path_with_sbatch(tmp_path, monkeypatch, present=False)
    app = XtuiApp(roots=[project(tmp_path / "proj")], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        with pytest.raises(InvalidSelectValueError):
            form.query_one("#where", Select).value = SLURM


async def test_slurm_shows_the_script_then_submits_it(tmp_path, monkeypatch) -> None:
    path_with_sbatch(tmp_path, monkeypatch, present=True)
    root = project(tmp_path / "proj")
    app = XtuiApp(roots=[root], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, app)
        form.query_one("#where", Select).value = SLURM
        await pilot.pause()
        assert form.query_one("#slurm-fields").display
        fields = {
            "config": "qlora.py", "processes": "2", "partition": "gpu", "slurm-nodes": "2", "time": "4:00:00",
            "sbatch-args": "--mem=64G --comment='two words'",
        }  # fmt: skip
        for field, value in fields.items():
            form.query_one(f"#{field}", Input).value = value
        await until(pilot, lambda: "1 x 1024 tokens" in text(form, "#memory"))
        assert "free" not in text(form, "#memory")  # its GPUs are not this machine's
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ScriptScreen))
        script = app.screen.script
        for line in ("#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2",
                     "#SBATCH --gres=gpu:2", "#SBATCH --time=4:00:00", "#SBATCH --mem=64G",
                     "#SBATCH '--comment=two words'"):  # fmt: skip
            assert line in script.splitlines()
        assert "xtuner.tools.train" in script and "--launcher slurm" in script
        work_dir = root / "work"
        title = str(app.screen.query_one(".title", Static).render())
        assert f"Submitting writes it to {work_dir / 'xtui-slurm-0.sh'}" in title  # not yet: "Written to" was untrue
        await pilot.press("escape")  # back to the form: nothing written
        await until(pilot, lambda: app.screen is form)
        assert not work_dir.exists()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ScriptScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        launch = WorkDir.open(work_dir).last
        assert launch.slurm_job == "4242" and launch.slurm["partition"] == "gpu"
        assert (work_dir / "xtui-slurm-0.sh").read_text() == script


def snapshot_app(monkeypatch, sbatch: bool) -> XtuiApp:
    """The app over a fixed project folder, fake GPUs with a full history, a fixed host, PATH with or without sbatch."""
    monkeypatch.setattr("sys.executable", "/usr/bin/python3")  # the shown command names the interpreter
    shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)
    root = project(SNAPSHOT_ROOT / "proj")
    path_with_sbatch(SNAPSHOT_ROOT, monkeypatch, present=sbatch)
    host = HostReading(12.0, 6 << 30, 24 << 30, 80 << 30, str(root))
    monitor = GpuMonitor(backend=FakeGpus(), disk_path=root, read_host=lambda path: host)
    for _ in range(HISTORY):  # equal readings: the same sparkline however many polls
        monitor.poll()
    return XtuiApp(roots=[root], monitor=monitor, poll_s=0.05)


async def fill(pilot, app: XtuiApp, **fields: str) -> None:
    """Open the form, fill it in, wait for the estimate; no blinking cursor."""
    form = await open_form(pilot, app)
    if "where" in fields:
        form.query_one("#where", Select).value = fields.pop("where")
    for field, value in fields.items():
        form.query_one(f"#{field}", Input).value = value
    await until(pilot, lambda: "memory:" in text(form, "#memory"))
    for field in form.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_here(snap_compare, size, monkeypatch) -> None:
    app = snapshot_app(monkeypatch, sbatch=False)
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: fill(pilot, app, config="qlora.py"))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_slurm(snap_compare, size, monkeypatch) -> None:
    app = snapshot_app(monkeypatch, sbatch=True)
    fields = {"where": SLURM, "config": "qlora.py", "partition": "gpu", "slurm-nodes": "2", "time": "4:00:00"}
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: fill(pilot, app, **fields))


def test_snapshot_slurm_script(snap_compare, monkeypatch) -> None:
    app = snapshot_app(monkeypatch, sbatch=True)

    async def shown(pilot) -> None:
        await fill(pilot, app, where=SLURM, config="qlora.py", partition="gpu", time="4:00:00")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ScriptScreen))

    assert snap_compare(app, terminal_size=(80, 24), run_before=shown)
