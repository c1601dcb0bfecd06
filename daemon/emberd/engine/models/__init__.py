"""The networks: one encoder per modality, the fusion MLP, and ``MultimodalNet`` over them."""

from .net import MultimodalNet, build_net

__all__ = ["MultimodalNet", "build_net"]
