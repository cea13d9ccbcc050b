"""LLaVA parts for chat, loaded the way xtuner's own chat tool loads them: encoder, projector, adapters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ChatError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

IMAGE_TOKEN_INDEX = -200  # xtuner.utils.IMAGE_TOKEN_INDEX: where an image's features go among the token ids
VISUAL_SELECT_LAYER = -2  # the hidden state xtuner's LLaVA projects (the default of `xtuner chat`)
ENCODER_FILES = ("config.json", "preprocessor_config.json")


class LlavaError(ChatError):
    """LLaVA parts that cannot be loaded or used as asked; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class LlavaParts:
    """A loaded LLaVA: the LLM (with its LoRA adapter, if any), vision tower, image processor and projector."""

    llm: Any
    visual_encoder: Any
    image_processor: Any
    projector: Any
    visual_select_layer: int = VISUAL_SELECT_LAYER


def encoder_folder(llava: Path, visual_encoder: Path | None) -> Path:
    """The visual encoder to load: the LLaVA folder's own `visual_encoder/`, else `visual_encoder`."""
    llava = Path(llava)
    if not llava.is_dir():
        raise LlavaError(f"LLaVA folder not found: {llava}")
    if not (llava / "projector" / "config.json").is_file():
        raise LlavaError(f"not a LLaVA folder (no projector/ with a config.json): {llava}")
    adapter = llava / "llm_adapter"
    if adapter.exists() and not (adapter / "adapter_config.json").is_file():
        raise LlavaError(f"{adapter} has no adapter_config.json")
    own = llava / "visual_encoder"
    if own.is_dir():
        if visual_encoder is not None and Path(visual_encoder).resolve() != own.resolve():
            raise LlavaError(f"{llava} has its own visual_encoder/: leave the visual encoder path empty")
        folder = own
    elif visual_encoder is None:
        raise LlavaError(f"{llava} has no visual_encoder/: give the visual encoder it was trained with")
    else:
        folder = Path(visual_encoder)
    missing = [name for name in ENCODER_FILES if not (folder / name).is_file()]
    if missing:
        raise LlavaError(f"not a visual encoder folder (no {', '.join(missing)}): {folder}")
    return folder


def load_llava(llm_model: Any, visual_encoder: Path | None, llava: Path, dtype: Any, device: str) -> LlavaParts:
    """Load the vision tower, image processor, projector and adapters of `llava` around the loaded `llm_model`."""
    encoder_path = encoder_folder(llava, visual_encoder)
    llava = Path(llava)
    from transformers import AutoModel, CLIPImageProcessor, CLIPVisionModel

    try:
        encoder = CLIPVisionModel.from_pretrained(str(encoder_path), torch_dtype=dtype)
        processor = CLIPImageProcessor.from_pretrained(str(encoder_path))
        llm = llm_model
        if (llava / "llm_adapter").is_dir():
            from peft import PeftModel

            llm = PeftModel.from_pretrained(llm, str(llava / "llm_adapter"))
        if (llava / "visual_encoder_adapter").is_dir():
            from peft import PeftModel

            encoder = PeftModel.from_pretrained(encoder, str(llava / "visual_encoder_adapter"))
        projector = AutoModel.from_pretrained(str(llava / "projector"), torch_dtype=dtype, trust_remote_code=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LlavaError(f"cannot load the LLaVA parts of {llava}: {exc}") from exc
    encoder.to(device).eval()
    projector.to(device).eval()
    llm.eval()
    return LlavaParts(llm, encoder, processor, projector)


def _first_parameter(module: Any) -> torch.Tensor:
    """A parameter of `module`, whose device and dtype inputs must match."""
    return next(module.parameters())


def image_features(parts: LlavaParts, image: Image) -> torch.Tensor:
    """The projected features of one image, shape (1, patches, LLM hidden size), as `xtuner chat` computes them."""
    import torch
    from xtuner.dataset.utils import expand2square

    processor = parts.image_processor
    square = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in processor.image_mean))
    pixels = processor.preprocess(square, return_tensors="pt")["pixel_values"]
    weight = _first_parameter(parts.visual_encoder)
    with torch.no_grad():
        outputs = parts.visual_encoder(pixels.to(weight.device, weight.dtype), output_hidden_states=True)
        return parts.projector(outputs.hidden_states[parts.visual_select_layer][:, 1:])


def multimodal_embeds(parts: LlavaParts, ids: list[int], features: torch.Tensor) -> dict:
    """`inputs_embeds` and `attention_mask` for `generate`: token embeddings with each image's features spliced in."""
    import torch
    from xtuner.model.utils import prepare_inputs_labels_for_multimodal

    images = ids.count(IMAGE_TOKEN_INDEX)
    if images == 0 or images != len(features):
        raise LlavaError(f"{images} image placeholders in the prompt for {len(features)} images")
    device = parts.llm.get_input_embeddings().weight.device
    with torch.no_grad():
        inputs = prepare_inputs_labels_for_multimodal(
            llm=parts.llm, input_ids=torch.tensor([ids], device=device), pixel_values=features.to(device)
        )
    embeds = inputs["inputs_embeds"]
    return {"inputs_embeds": embeds, "attention_mask": torch.ones(embeds.shape[:2], dtype=torch.long, device=device)}
