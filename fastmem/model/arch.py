"""Per-architecture module names, looked up by `config.model_type` (EasyEdit style)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from fastmem.errors import ModelLoadError


@dataclass(frozen=True)
class ArchNames:
    final_norm: str  # the norm applied before the output embedding
    layers: str  # the list of transformer blocks
    input_embedding: str


ARCH_TABLE: dict[str, ArchNames] = {
    "gpt_neox": ArchNames("gpt_neox.final_layer_norm", "gpt_neox.layers", "gpt_neox.embed_in"),
    "llama": ArchNames("model.norm", "model.layers", "model.embed_tokens"),
    "mistral": ArchNames("model.norm", "model.layers", "model.embed_tokens"),
    "qwen2": ArchNames("model.norm", "model.layers", "model.embed_tokens"),
    "gpt2": ArchNames("transformer.ln_f", "transformer.h", "transformer.wte"),
}


def arch_names(model: nn.Module) -> ArchNames:
    model_type = getattr(model.config, "model_type", "?")
    try:
        return ARCH_TABLE[model_type]
    except KeyError:
        known = ", ".join(sorted(ARCH_TABLE))
        raise ModelLoadError(
            f"Architecture '{model_type}' is not supported yet (known: {known})."
        ) from None


def get_module(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def final_norm(model: nn.Module) -> nn.Module:
    return get_module(model, arch_names(model).final_norm)


def num_layers(model: nn.Module) -> int:
    return len(get_module(model, arch_names(model).layers))
