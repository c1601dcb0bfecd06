"""Ember's C++/CUDA torch ops (``torch.ops.ember.*``): batch collation of pre-tokenized text
and of decoded images, and the fusion MLP head. ``ops`` holds the typed wrappers,
``reference`` their pure-torch twins."""

import torch  # noqa: F401  (loads libtorch, which _C links against)

from . import _C, ops  # noqa: F401 - loading _C registers torch.ops.ember.*
