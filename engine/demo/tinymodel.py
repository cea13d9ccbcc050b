"""A tiny random Llama with a BPE tokenizer trained on the spot, built offline as a Hugging Face folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.files import build_folder

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, IM_START, IM_END]  # ids 0..5, in this order
# One pre-token per CJK ideograph, kana, CJK or full-width punctuation character.
CJK_CHAR = r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
# Control bytes other than tab and newline get no token: an untrained model would print them into the log.
CONTROL_BYTES = [b for b in range(32) if chr(b) not in "\t\n"] + [127]
# The words of the internlm2_chat template around each turn, so they become whole tokens.
TEMPLATE_TEXT = "system\nuser\nassistant\n"
FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
# LoRA leaves the output head frozen: at the default init (0.02) its logits stay so flat that the loss
# cannot fall below ~3.4 even when the answer is right; 0.1 gives it a pretrained model's range.
INIT_STD = 0.1


def is_complete(folder: Path) -> bool:
    """True when `folder` holds a whole tiny model and tokenizer."""
    return all((folder / name).is_file() for name in FILES)


def _byte_alphabet(pre_tokenizers) -> list[str]:
    """The byte-level alphabet without the characters that stand for CONTROL_BYTES."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    control = {byte_level.pre_tokenize_str(chr(b))[0][0] for b in CONTROL_BYTES}
    return sorted(set(pre_tokenizers.ByteLevel.alphabet()) - control)


def train_tokenizer(texts: Iterable[str]):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, each CJK character its own pre-token."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_CHAR), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=_byte_alphabet(pre_tokenizers),
        show_progress=False,
    )
    backend.train_from_iterator([TEMPLATE_TEXT, *texts], trainer)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


def random_llama(tokenizer, seed: int = 0):
    """A `LlamaForCausalLM` of SHAPE sized to `tokenizer`, random weights from `seed`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ids = tokenizer.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=ids(BOS),
        eos_token_id=ids(EOS),
        pad_token_id=ids(PAD),
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        torch_dtype="float32",
        **SHAPE,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # A chat turn ends with <|im_end|>: plain `generate` stops there as well as at </s>.
    model.generation_config.eos_token_id = [ids(EOS), ids(IM_END)]
    return model


def build_tiny_model(folder: Path, texts: Iterable[str], seed: int = 0) -> Path:
    """Train the tokenizer on `texts`, make the random model and save both into `folder` (all or nothing)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not a complete tiny model: move it away first")

    def fill(staging: Path) -> None:
        tokenizer = train_tokenizer(texts)
        tokenizer.save_pretrained(staging)
        random_llama(tokenizer, seed).save_pretrained(staging, safe_serialization=True)

    return build_folder(folder, fill)
