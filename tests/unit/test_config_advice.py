"""Config advice on the demo's tiny model and data: templates, evaluation inputs, the run's length, map_fn, cut records."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.xtuner import configs
from engine.xtuner.config_advice import Severity, advise, run_length


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name="小测", cuda=False)


def _variant(demo, name: str, settings: dict | None = None, calls: dict | None = None):
    """The demo's config with some settings and calls changed, written beside it."""
    source = configs.edit_settings(demo.config.read_text(encoding="utf-8"), settings or {})
    for path, changes in (calls or {}).items():
        source = configs.edit_call(source, path, changes)
    target = demo.folder / f"{name}.py"
    target.write_text(source, encoding="utf-8")
    return target


def _topics(advice) -> dict[str, Severity]:
    return {a.topic: a.severity for a in advice.advice}


def test_the_demo_is_fine_and_its_length_is_worked_out_from_packed_tokens(demo) -> None:
    advice = advise(demo.config, demo.folder)
    assert advice.advice == () and advice.ok and advice.data == (demo.data,)
    (tokens,) = advice.tokens
    assert tokens.packed and tokens.records == 240 and 80 <= tokens.samples <= 100 and tokens.cut == 0
    assert advice.length.iterations == 3 * tokens.samples == advice.length.optimizer_steps
    two = advise(demo.config, demo.folder, gpus=2, count_tokens=True)
    assert two.length.iterations_per_epoch == -(-tokens.samples // 2)


def test_run_length_counts_batches_and_optimizer_steps_apart() -> None:
    length = run_length(1000, {"batch_size": 4, "max_epochs": 3, "accumulative_counts": 16}, gpus=2)
    assert (length.iterations_per_epoch, length.iterations, length.optimizer_steps) == (125, 375, 24)


def test_save_steps_and_evaluation_freq_beyond_the_run(demo) -> None:
    late = advise(_variant(demo, "late", {"save_steps": "5000", "evaluation_freq": "1000"}), demo.folder)
    assert _topics(late) == {"save_steps": Severity.WARNING, "evaluation_freq": Severity.WARNING} and late.ok
    assert (
        "before the last iteration" in late.advice[0].message
        and f"~{late.length.iterations} iterations" in late.advice[0].message
    )
    never = advise(
        _variant(demo, "never", {"save_steps": "5000"}, {"default_hooks.checkpoint": {"save_last": "False"}}),
        demo.folder,
    )
    assert (
        _topics(never) == {"save_steps": Severity.PROBLEM}
        and "no checkpoint is saved at all" in never.advice[0].message
    )
    assert not never.ok


def test_empty_or_absent_evaluation_inputs(demo) -> None:
    empty = advise(_variant(demo, "empty", {"evaluation_inputs": "[]"}), demo.folder, count_tokens=False)
    assert _topics(empty) == {"evaluation_inputs": Severity.WARNING, "save_steps": Severity.NOTE}
    assert "evaluation_inputs is empty" in empty.advice[0].message
    source = demo.config.read_text(encoding="utf-8").replace("evaluation_inputs = ", "_inputs = ", 1)
    (demo.folder / "absent.py").write_text(
        source.replace("evaluation_inputs=evaluation_inputs", "evaluation_inputs=_inputs")
    )
    absent = advise(demo.folder / "absent.py", demo.folder)
    assert "evaluation_inputs is not set" in absent.advice[0].message


def test_the_chat_hook_asking_with_another_template(demo) -> None:
    hook = {"custom_hooks.EvaluateChatHook": {"prompt_template": "PROMPT_TEMPLATE.default"}}
    advice = advise(_variant(demo, "hook", calls=hook), demo.folder)
    assert _topics(advice) == {"prompt_template": Severity.WARNING}
    assert (
        "training uses the internlm2_chat template but EvaluateChatHook asks with default" in advice.advice[0].message
    )


def test_the_models_own_chat_template_against_the_configs(demo) -> None:
    model = demo.folder / "chat-model"
    shutil.copytree(demo.model, model, dirs_exist_ok=True)
    settings = json.loads((model / "tokenizer_config.json").read_text())
    settings["chat_template"] = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    model_setting = {"pretrained_model_name_or_path": repr(str(model))}
    assert "prompt_template" not in _topics(
        advise(_variant(demo, "same", model_setting), demo.folder, count_tokens=False)
    )
    other = advise(
        _variant(demo, "other", {**model_setting, "prompt_template": "PROMPT_TEMPLATE.llama3_chat"}),
        demo.folder,
        count_tokens=False,
    )
    message = next(a.message for a in other.advice if a.topic == "prompt_template")
    assert "the model's own chat template uses <|im_end|>, <|im_start|>, the config trains with llama3_chat" in message


def test_data_in_another_format_than_the_map_fn_reads(demo) -> None:
    data = demo.folder / "openai.jsonl"
    row = {"messages": [{"role": "user", "content": "你是谁"}, {"role": "assistant", "content": "我是小测"}]}
    data.write_text(json.dumps(row, ensure_ascii=False) + "\n")
    advice = advise(demo.config, demo.folder, data=data)
    problem = next(a for a in advice.advice if a.topic == "dataset_map_fn")
    assert problem.severity == Severity.PROBLEM and not advice.ok
    assert (
        "in the openai format, which needs dataset_map_fn=openai_map_fn; the config sets dataset_map_fn=None"
        in problem.message
    )


def test_records_longer_than_max_length_are_counted(demo) -> None:
    advice = advise(_variant(demo, "short", {"max_length": "40"}), demo.folder)
    cut = next(a for a in advice.advice if a.topic == "max_length")
    assert cut.severity == Severity.WARNING and "240 of 240 records are longer than max_length=40" in cut.message


def test_launch_problems_are_part_of_the_advice(demo, tmp_path) -> None:
    missing = _variant(demo, "missing", {"alpaca_en_path": repr(str(tmp_path / "gone.json"))})
    advice = advise(missing, demo.folder, count_tokens=False)
    assert any(a.topic == "launch" and "data not found" in a.message for a in advice.advice) and not advice.ok


def test_advice_never_runs_the_config(demo, tmp_path) -> None:
    marker = tmp_path / "ran"
    evil = demo.folder / "evil.py"
    evil.write_text(
        f"open({str(marker)!r}, 'w').write('x')\n" + demo.config.read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert advise(evil, demo.folder).ok
    assert not marker.exists()


def _mmengine_warmup_starts(ratio: float, epochs: int, per_epoch: int) -> bool:
    """Whether mmengine's LinearLR, built as XTuner's configs build it, accepts this warm-up."""
    import torch
    from mmengine.optim import LinearLR

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    try:
        LinearLR.build_iter_from_epoch(
            optimizer, start_factor=1e-5, by_epoch=True, begin=0, end=ratio * epochs, epoch_length=per_epoch
        )
    except ValueError as exc:
        assert "end should be larger than begin" in str(exc)
        return False
    return True


def test_a_warm_up_that_rounds_to_no_iteration(demo) -> None:
    iterations = advise(demo.config, demo.folder).length.iterations  # ~270: 3 epochs of ~90 packed samples
    short = advise(_variant(demo, "short-warmup", {"warmup_ratio": str(0.9 / iterations)}), demo.folder)
    assert _topics(short) == {"warmup_ratio": Severity.PROBLEM} and not short.ok
    least = float(short.advice[0].message.split("use warmup_ratio=")[1].split()[0])
    assert "end should be larger than begin" in short.advice[0].message
    length = short.length
    epochs = length.iterations // length.iterations_per_epoch
    assert not _mmengine_warmup_starts(0.9 / iterations, epochs, length.iterations_per_epoch)
    assert _mmengine_warmup_starts(least, epochs, length.iterations_per_epoch)
    assert "warmup_ratio" not in _topics(advise(_variant(demo, "warmup", {"warmup_ratio": str(least)}), demo.folder))
