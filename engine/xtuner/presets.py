"""Names XTuner knows by heart: its DeepSpeed presets (`--deepspeed deepspeed_zero2`); cheap to import."""

DEEPSPEED_PRESETS = (
    "deepspeed_zero1",
    "deepspeed_zero2",
    "deepspeed_zero2_offload",
    "deepspeed_zero3",
    "deepspeed_zero3_offload",
)
