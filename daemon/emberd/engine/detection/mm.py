"""The one door to mmdet: imported lazily, so that the daemon and every other problem type
work without the detection extra, and a detection request without it fails with a clear
FAILED_PRECONDITION naming the install command."""

from __future__ import annotations

import functools
import logging
from types import ModuleType

from ..errors import FailedPrecondition

INSTALL_HINT = "make install-detection (scripts/install_detection.sh: mmcv 2.1.0 with its ops, mmdet 3.3.0, mmengine 0.10.7, pycocotools)"


@functools.cache
def mmdet() -> ModuleType:
    """``mmdet``, with its modules registered and ``mmdet`` as the default registry scope."""
    try:
        import mmcv.ops  # noqa: F401 - mmdet.models needs the compiled ops, not mmcv-lite
        import mmdet as _mmdet
        import mmdet.models  # noqa: F401
        import pycocotools  # noqa: F401
        from mmdet.utils import register_all_modules
    except ImportError as e:
        raise FailedPrecondition(
            f"object detection needs the detection extra, which is not installed here ({e}); install it with {INSTALL_HINT}"
        ) from None
    register_all_modules(init_default_scope=True)
    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel(logging.WARNING)  # not every layer's init at INFO
    return _mmdet
