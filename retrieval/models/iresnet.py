"""IR-ResNet-50 of ArcFace (Deng et al., CVPR 2019): the "LResNet50E-IR" face net, 512-d.

Improved residual units (BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus shortcut),
stages of 3, 4, 14, 3 units at widths 64-512, each halving the resolution, then the "E"
output: BN - flatten (512x7x7) - FC 512 - BN1d. The embedding is the BN1d output.

Weights come from a local file in one of the two published layouts:

- insightface's PyTorch models (``arcface_torch``, e.g. ``ms1mv3_arcface_r50_fp16/backbone.pth``):
  this module uses the same parameter names, so they load as they are;
- insightface's MXNet models (``model-r50-am-lfw``, ``model-0000.params``; save the result of
  ``mx.nd.load`` as a dict of tensors): names such as ``arg:stage1_unit1_conv1_weight`` and
  ``aux:bn0_moving_mean``, renamed by :func:`convert_insightface_mxnet`. MXNet's BatchNorm used
  eps 2e-5, which :func:`iresnet50` then uses unless ``bn_eps`` is given.

Face crops (ArcFace paper and insightface): five facial landmarks (MTCNN; RetinaFace in
``arcface_torch``) aligned by a similarity transform to the fixed 112x112 template with
landmarks (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
(70.7299, 92.2041). Pixels are mapped to [-1, 1]: ``(x/255 - 0.5) / 0.5`` (PyTorch models;
the MXNet models used ``(x - 127.5) / 128``), i.e. ``mean = std = (0.5, 0.5, 0.5)`` after ``ToTensor``.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from retrieval.models.backbones import BACKBONES
from retrieval.models.weights import load_weights, read_state_dict

STAGE_UNITS = (3, 4, 14, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
INPUT_SIZE = 112
FINAL_SIZE = INPUT_SIZE // 16
TORCH_BN_EPS, MXNET_BN_EPS = 1e-5, 2e-5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, in_channels: int, width: int, stride: int, bn_eps: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=bn_eps)
        self.conv1 = _conv3x3(in_channels, width)
        self.bn2 = nn.BatchNorm2d(width, eps=bn_eps)
        self.prelu = nn.PReLU(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width, eps=bn_eps)
        self.downsample = None
        if stride != 1 or in_channels != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width, eps=bn_eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet50(nn.Module):
    """``forward_features`` maps aligned 112x112 crops to the embedding as (B, D, 1, 1)."""

    def __init__(self, embedding_dim: int = 512, bn_eps: float = TORCH_BN_EPS):
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=bn_eps)
        self.prelu = nn.PReLU(64)
        in_channels, stages = 64, []
        for units, width in zip(STAGE_UNITS, STAGE_WIDTHS):
            layer = [IBasicBlock(in_channels, width, 2, bn_eps)]
            layer += [IBasicBlock(width, width, 1, bn_eps) for _ in range(units - 1)]
            stages.append(nn.Sequential(*layer))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(in_channels, eps=bn_eps)
        self.fc = nn.Linear(in_channels * FINAL_SIZE * FINAL_SIZE, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=bn_eps)
        self.out_channels = embedding_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"iresnet50 takes {INPUT_SIZE}x{INPUT_SIZE} aligned face crops, got "
                             f"{tuple(x.shape[-2:])}; set the transform to produce {INPUT_SIZE}x{INPUT_SIZE}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.bn2(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.features(self.fc(x.flatten(1)))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


_MXNET_UNIT = re.compile(r"stage([1-4])_unit(\d+)_(bn1|bn2|bn3|conv1|conv2|relu1|conv1sc|sc)_(\w+)$")
_MXNET_UNIT_LAYERS = {"bn1": "bn1", "bn2": "bn2", "bn3": "bn3", "conv1": "conv1", "conv2": "conv2",
                      "relu1": "prelu", "conv1sc": "downsample.0", "sc": "downsample.1"}
_MXNET_TOP_LAYERS = {"conv0": "conv1", "bn0": "bn1", "relu0": "prelu", "bn1": "bn2", "pre_fc1": "fc",
                     "fc1": "features"}
_MXNET_PARAMS = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                 "moving_mean": "running_mean", "moving_var": "running_var"}
_MXNET_CLASSIFIER = "fc7_"


def convert_insightface_mxnet(published: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an insightface MXNet IR-ResNet-50 (``arg:``/``aux:`` prefixes optional) to this
    module's names. The ``fc1`` BatchNorm was built with ``fix_gamma=True``, so MXNet ignored
    its stored gamma and used 1; the converted scale is 1 to match. PReLU slopes are MXNet's
    ``*_gamma`` of ``relu`` layers. The ArcFace classifier (``fc7``) is dropped."""
    converted, unknown = {}, []
    for key, value in published.items():
        name = key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key
        if name.startswith(_MXNET_CLASSIFIER):
            continue
        if match := _MXNET_UNIT.match(name):
            stage, unit, layer, param = match.groups()
            target = f"layer{stage}.{int(unit) - 1}.{_MXNET_UNIT_LAYERS[layer]}"
        else:
            layer, _, param = name.rpartition("_")
            if layer.endswith("moving"):  # moving_mean / moving_var split at the wrong underscore
                layer, param = layer[: -len("_moving")], "moving_" + param
            if layer not in _MXNET_TOP_LAYERS:
                unknown.append(key)
                continue
            target = _MXNET_TOP_LAYERS[layer]
        is_prelu = target.endswith("prelu")
        if param not in _MXNET_PARAMS or (is_prelu and param != "gamma"):
            unknown.append(key)
            continue
        converted[f"{target}.{'weight' if is_prelu else _MXNET_PARAMS[param]}"] = value
    if unknown:
        raise ValueError(f"not an insightface MXNet IR-ResNet-50 state dict: unknown keys {', '.join(unknown[:5])}")
    if "features.weight" in converted:
        converted["features.weight"] = torch.ones_like(converted["features.weight"])
    return converted


def _is_mxnet_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(key.split(":")[-1].startswith("conv0_") for key in state_dict)


@BACKBONES.register("iresnet50")
def iresnet50(pretrained: str | None = None, embedding_dim: int = 512, bn_eps: float | None = None) -> IResNet50:
    """ArcFace IR-ResNet-50; ``pretrained`` is a local file in either published layout.

    ``bn_eps`` defaults to PyTorch's 1e-5, or MXNet's 2e-5 when the file is in the MXNet layout.
    """
    weights = read_state_dict(pretrained) if pretrained is not None else None
    mxnet = weights is not None and _is_mxnet_layout(weights)
    if bn_eps is None:
        bn_eps = MXNET_BN_EPS if mxnet else TORCH_BN_EPS
    net = IResNet50(embedding_dim, bn_eps)
    if weights is not None:
        load_weights(net, convert_insightface_mxnet(weights) if mxnet else weights, pretrained)
    return net
