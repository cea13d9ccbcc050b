"""EvaluateChatHook's `Sample output:` blocks: the text of one sample, split into prompt and answer by chat template."""

from __future__ import annotations

import re

# (user marker, assistant marker) of XTuner's PROMPT_TEMPLATE entries, most specific first; an assistant marker
# holds the newlines the template puts before the answer, so that a blank line there is no end of the answer.
_TEMPLATES = (
    ("<|im_start|>user\n", "<|im_start|>assistant\n"),  # internlm2_chat, qwen_chat, minicpm3
    ("<|start_header_id|>user<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n"),  # llama3
    ("<|start_header_id|>user<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>"),
    ("<start_of_turn>user\n", "<start_of_turn>model\n"),  # gemma
    ("<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>"),  # cohere_chat
    ("<|User|>:", "<|Bot|>:"),  # default, internlm_chat
    ("<|user|>", "<|assistant|>"),  # zephyr, chatglm3, phi3_chat
    ("[INST]", "[/INST]"),  # llama2_chat, mistral, mixtral, code_llama_chat, deepseek_moe
    ("### Instruction:", "### Response:"),  # deepseek_coder, wizardcoder
    ("USER:", "ASSISTANT:"),  # vicuna, wizardlm
    ("User:", "Assistant:"),  # deepseek_v2
    ("问：", "答："),  # chatglm2
    ("<用户>", "<AI>"),  # minicpm
)
_END_TOKENS = (
    "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<eoa>", "<eoh>", "<|end|>", "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>", "<｜end▁of▁sentence｜>", "<eos>",
)  # fmt: skip
_END = re.compile("|".join(map(re.escape, _END_TOKENS)))  # its leftmost match: the first end token
_BOS_TOKENS = ("<s>", "<|begin_of_text|>", "<bos>", "<BOS_TOKEN>")  # each starts with "<"
_SPACES = re.compile(r"\s*")  # what str.lstrip() strips
MAX_SAMPLE_CHARS = 1 << 18  # text of one sample kept; the rest is dropped


def _until_end_token(text: str) -> tuple[str, bool]:
    """The text before its first template end token, and whether it had one."""
    end = _END.search(text)
    return (text, False) if end is None else (text[: end.start()], True)


def _clean(text: str) -> str:
    """Text without special tokens and outer whitespace."""
    if "<" in text:
        for token in _BOS_TOKENS:
            if token in text:
                text = text.replace(token, "")
    return text.strip()


def _split(text: str) -> tuple[str, str]:
    """(prompt, raw answer) of a sample in a known chat template, else ("", text)."""
    for user, bot in _TEMPLATES:
        start = text.find(user)
        for _ in range(4):  # a system block shaped like a turn (llama2, mistral) is skipped
            if start < 0:
                break
            mid = text.find(bot, start + len(user))
            if mid < 0:
                break
            after = mid + len(bot)
            if not text.startswith(user, _SPACES.match(text, after).end()):
                return _clean(_until_end_token(text[start + len(user) : mid])[0]), text[after:]
            start = text.find(user, after)
    return "", text


def _answer(raw: str) -> tuple[str, bool]:
    """The answer in the raw text after the assistant marker, and whether its end was seen.

    It ends at the first end token; without one, at its last blank line (what follows is other output).
    """
    answer, ended = _until_end_token(raw)
    if not ended and (blank := answer.rfind("\n\n")) >= 0:
        answer, ended = answer[:blank], True
    return _clean(answer), ended


def split_sample(text: str) -> tuple[str, str]:
    """(prompt, answer) of an EvaluateChatHook output in a known chat template, else ("", text)."""
    prompt, raw = _split(text)
    return prompt, _answer(raw)[0]


class SampleText:
    """The lines of one sample as they come, bounded."""

    def __init__(self, first: str, at: str, rank: int | None) -> None:
        self.at = at
        self.rank = rank  # the prefix its header had; lines of other ranks are not its text
        self._lines = [first] if first else []
        self._size = len(first)

    def add(self, line: str) -> None:
        """One more line of the sample's text."""
        if self._size < MAX_SAMPLE_CHARS:
            self._lines.append(line)
            self._size += len(line) + 1

    def parts(self, ended: bool) -> tuple[str, str, bool]:
        """(prompt, answer, complete); `ended`: a later record closed it, rather than the end of the text."""
        prompt, raw = _split("\n".join(self._lines) + "\n" if self._lines else "")
        answer, seen_end = _answer(raw)
        return prompt, answer, ended or seen_end
