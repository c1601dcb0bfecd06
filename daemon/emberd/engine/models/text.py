"""``hf_text``: a HuggingFace transformers encoder with mean (or CLS) pooling."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..config import MINILM, Config, TextConfig, default_text_checkpoint
from ..errors import NotFound


def resolve_text_checkpoint(name: str) -> str:
    """A local HuggingFace folder for ``name`` (the MiniLM package name maps to its folder).

    Ember never reaches a hub: a name that is not a folder on disk is an error."""
    if name == MINILM:
        return default_text_checkpoint()
    if os.path.isdir(name) and os.path.exists(os.path.join(name, "config.json")):
        return name
    raise NotFound(
        f"model.hf_text.checkpoint_name {name!r} is not a HuggingFace model folder on disk "
        f"(a folder with config.json and weights, e.g. one written by dump_model); "
        f"Ember does not download from a hub. The default is {MINILM!r}."
    )


def load_tokenizer(cfg: Config) -> Any:
    """The tokenizer of ``cfg.text.checkpoint_name``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_checkpoint(cfg.text.checkpoint_name))


class TextEncoder(nn.Module):
    """Encodes one or more text columns; ``out_features`` is the feature width it returns.

    With several columns in siamese mode, each column is encoded alone (one batched pass)
    and, for two columns, |u-v| and u*v of the L2-normalized embeddings are appended (scaled
    to unit size per component) so a linear head reads their cosine at once."""

    def __init__(self, backbone: nn.Module, cfg: TextConfig, num_columns: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = cfg.pooling
        self.num_seqs = 1 if (cfg.text_pair_mode == "cross" or num_columns == 1) else num_columns
        self.hidden = backbone.config.hidden_size
        self.interact = self.num_seqs == 2
        self.out_features = self.hidden * (self.num_seqs + (2 if self.interact else 0))

    @classmethod
    def pretrained(cls, cfg: TextConfig, num_columns: int) -> "TextEncoder":
        from transformers import AutoModel

        path = resolve_text_checkpoint(cfg.checkpoint_name)
        return cls(AutoModel.from_pretrained(path), cfg, num_columns)

    @classmethod
    def from_config_dir(cls, path: str, cfg: TextConfig, num_columns: int) -> "TextEncoder":
        """Architecture only (weights come from the model's own safetensors)."""
        from transformers import AutoConfig, AutoModel

        return cls(AutoModel.from_config(AutoConfig.from_pretrained(path)), cfg, num_columns)

    def embed(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Pooled embedding of each sequence (N, L) -> (N, hidden)."""
        out = self.backbone(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        if self.pooling == "cls":
            return out[:, 0]
        m = mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, text: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, mask, types = text  # (S, B, L)
        s, b, n = ids.shape
        pooled = self.embed(ids.reshape(s * b, n), mask.reshape(s * b, n), types.reshape(s * b, n))
        pooled = pooled.view(s, b, -1)
        feats = list(pooled)
        if self.interact:
            u, v = nn.functional.normalize(pooled[0], dim=-1), nn.functional.normalize(pooled[1], dim=-1)
            d = float(self.hidden)
            feats += [(u - v).abs() * d**0.5, u * v * d]
        return torch.cat(feats, -1)

    def special_tokens(self, tokenizer: Any) -> tuple[int, int, int]:
        return tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
