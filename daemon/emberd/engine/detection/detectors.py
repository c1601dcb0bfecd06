"""mmdet detectors by name: small, CPU-friendly presets built offline (``init_cfg=None``:
no hub here), and detectors started from a dumped ``mmdet_image/`` folder.

A detector is described by an mmdet model config (a plain dict, stored as JSON beside its
weights) and built with mmdet's ``MODELS`` registry. ``DATA_PREPROCESSOR`` expects BGR
uint8 images as mmdet's own pipeline loads them, so a dumped config reads images the same
way in plain mmdet.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgument, NotFound
from ..storage import read_json
from .mm import mmdet

__all__ = ["PRESETS", "build_detector", "detector_config", "is_mmdet_folder", "check_detector_checkpoint", "transfer_weights"]

# ImageNet statistics on 0-255 BGR input, converted to RGB by the preprocessor.
_DATA_PREPROCESSOR = dict(
    type="DetDataPreprocessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
)
_TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)
_FOCAL = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)


def _resnet(depth: int, base_channels: int) -> dict[str, Any]:
    return dict(
        type="ResNet",
        depth=depth,
        base_channels=base_channels,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
        init_cfg=None,
    )


def _fcos(num_classes: int, base_channels: int, width: int, levels: int) -> dict[str, Any]:
    """FCOS on ResNet-18 + FPN over P3..P(2+levels); ``width`` channels in neck and head."""
    strides = [8 * 2**i for i in range(levels)]
    ranges = [(-1, 32)] + [(32 * 2**i, 64 * 2**i) for i in range(levels - 2)] + [(32 * 2 ** (levels - 2), 100000000)]
    return dict(
        type="FCOS",
        data_preprocessor=copy.deepcopy(_DATA_PREPROCESSOR),
        backbone=_resnet(18, base_channels),
        neck=dict(
            type="FPN",
            in_channels=[base_channels * 2**i for i in range(4)],
            out_channels=width,
            start_level=1,
            add_extra_convs="on_output",
            num_outs=levels,
            relu_before_extra_convs=True,
        ),
        bbox_head=dict(
            type="FCOSHead",
            num_classes=num_classes,
            in_channels=width,
            stacked_convs=2 if width < 128 else 4,
            feat_channels=width,
            strides=strides,
            regress_ranges=ranges,
            norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
            loss_cls=copy.deepcopy(_FOCAL),
            loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        ),
        test_cfg=copy.deepcopy(_TEST_CFG),
    )


def _retinanet(num_classes: int) -> dict[str, Any]:
    return dict(
        type="RetinaNet",
        data_preprocessor=copy.deepcopy(_DATA_PREPROCESSOR),
        backbone=_resnet(18, 64),
        neck=dict(type="FPN", in_channels=[64, 128, 256, 512], out_channels=256, start_level=1, add_extra_convs="on_input", num_outs=5),
        bbox_head=dict(
            type="RetinaHead",
            num_classes=num_classes,
            in_channels=256,
            stacked_convs=4,
            feat_channels=256,
            anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=copy.deepcopy(_FOCAL),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        train_cfg=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
            sampler=dict(type="PseudoSampler"),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        test_cfg=copy.deepcopy(_TEST_CFG),
    )


def _yolox_tiny(num_classes: int) -> dict[str, Any]:
    norm, act = dict(type="BN", momentum=0.03, eps=0.001), dict(type="Swish")
    return dict(
        type="YOLOX",
        data_preprocessor=dict(type="DetDataPreprocessor", pad_size_divisor=32, pad_value=114.0),
        backbone=dict(type="CSPDarknet", deepen_factor=0.33, widen_factor=0.375, out_indices=(2, 3, 4), norm_cfg=norm, act_cfg=act, init_cfg=None),
        neck=dict(type="YOLOXPAFPN", in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1, norm_cfg=norm, act_cfg=act, init_cfg=None),
        bbox_head=dict(
            type="YOLOXHead",
            num_classes=num_classes,
            in_channels=96,
            feat_channels=96,
            stacked_convs=2,
            strides=(8, 16, 32),
            norm_cfg=norm,
            act_cfg=act,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="sum", loss_weight=1.0),
            loss_bbox=dict(type="IoULoss", mode="square", eps=1e-16, reduction="sum", loss_weight=5.0),
            loss_obj=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="sum", loss_weight=1.0),
            loss_l1=dict(type="L1Loss", reduction="sum", loss_weight=1.0),
        ),
        train_cfg=dict(assigner=dict(type="SimOTAAssigner", center_radius=2.5)),
        test_cfg=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.65), max_per_img=100),
    )


# name -> model config for ``num_classes`` classes
PRESETS: dict[str, Callable[[int], dict[str, Any]]] = {
    "fcos_r18_tiny": lambda k: _fcos(k, base_channels=16, width=64, levels=3),  # the CPU default (~1M parameters)
    "fcos_r18": lambda k: _fcos(k, base_channels=64, width=256, levels=5),
    "retinanet_r18": _retinanet,
    "yolox_tiny": _yolox_tiny,
}


def is_mmdet_folder(name: str) -> bool:
    if not ("/" in name or os.sep in name) or not os.path.isdir(name):
        return False
    return os.path.exists(os.path.join(name, "config.json")) and os.path.exists(os.path.join(name, "model.safetensors"))


def check_detector_checkpoint(name: str) -> None:
    """Raise unless ``name`` is a preset or a dumped ``mmdet_image/`` folder."""
    if is_mmdet_folder(name):
        return
    if "/" in name or os.sep in name:
        raise NotFound(
            f"model.mmdet_image.checkpoint_name {name!r} is not an mmdet_image folder on disk "
            "(config.json + model.safetensors + classes.json, as dump_model writes)"
        )
    if name not in PRESETS:
        raise InvalidArgument(f"model.mmdet_image.checkpoint_name {name!r} is not a detector Ember knows; presets: {sorted(PRESETS)}")


def detector_config(name: str, classes: tuple[str, ...], score_threshold: float, max_detections: int) -> dict[str, Any]:
    """The mmdet model config of a new detector for ``classes``: a preset, or a dumped
    folder's architecture with its head resized to the new class set."""
    check_detector_checkpoint(name)
    if is_mmdet_folder(name):
        model = read_json(Path(name) / "config.json")["model"]
        model["bbox_head"]["num_classes"] = len(classes)
    else:
        model = PRESETS[name](len(classes))
    model["test_cfg"]["score_thr"] = score_threshold
    model["test_cfg"]["max_per_img"] = max_detections
    return json.loads(json.dumps(model))  # JSON-shaped (tuples as lists), as stored


def build_detector(model_cfg: dict[str, Any]) -> nn.Module:
    """The mmdet detector of ``model_cfg`` with fresh weights (no pretrained download)."""
    mmdet()
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    net = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
    net.init_weights()
    return net


def transfer_weights(net: nn.Module, folder: str) -> list[str]:
    """Load the backbone and neck of a dumped detector into ``net`` (its head stays new).
    Returns the names loaded."""
    from safetensors.torch import load_file

    state = load_file(os.path.join(folder, "model.safetensors"))
    own = net.state_dict()
    picked = {k: v for k, v in state.items() if k.startswith(("backbone.", "neck."))}
    wrong = [k for k, v in picked.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise InvalidArgument(f"{folder!r} does not fit this detector's backbone/neck: {wrong[:5]}")
    with torch.no_grad():
        for k, v in picked.items():
            own[k].copy_(v)
    return sorted(picked)
