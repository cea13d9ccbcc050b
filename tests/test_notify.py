"""The desktop-notification escape sequences, plain and wrapped for tmux."""

from tui.notify import notification_sequence


def test_plain_sequences_carry_title_and_body() -> None:
    seq = notification_sequence("xtui", "demo/work: failed - CUDA out of memory", in_tmux=False)
    assert seq.startswith("\x1b]777;notify;xtui;demo/work: failed - CUDA out of memory\x07")
    assert "\x1b]9;xtui: demo/work: failed - CUDA out of memory\x07" in seq


def test_tmux_passthrough_doubles_escapes_and_strips_separators() -> None:
    seq = notification_sequence("xtui", "a;b\x1b[31m", in_tmux=True)
    parts = seq.split("\x1b\\")[:-1]
    assert len(parts) == 2 and all(p.startswith("\x1bPtmux;\x1b\x1b]") for p in parts)
    assert ";b" not in seq.split("notify;xtui;")[1].split("\x07")[0]  # ';' would end the field
    assert "[31m" in seq and "\x1b[31m" not in seq.replace("\x1b\x1b", "")  # the body's ESC is dropped
