"""Caption your own images (or scikit-image's sample photos) with a trained checkpoint.

The recipe's inference hooks: ``python -m toolkit.predict ckpt=... input=<image|folder|list>``
(one record per image: ``caption``, ``words``; the attention of every word as npz, and the
per-word overlay figure with ``plot=true``) and ``toolkit.api`` (``predict_arrays``). Images
of any mode and size are converted to RGB and resized as the data code does. This module's
own command is kept:

    python -m recipes.captioning.predict --ckpt runs/.../last.ckpt \\
        --images astronaut chelsea my_photo.jpg --out runs/captioning/predict

Names without a file suffix are ``skimage.data`` loaders (``astronaut``, ``chelsea``,
``coffee`` ...). For each image it writes ``<name>.png`` (the image and one attention
overlay per generated word), ``<name>.npz`` (image, words, attention, grid) and one
``captions.json``. Photos are fed at the encoder's input size (224² for
``model/encoder=efficientnet_lite0``), so a model trained on the 64² scenes sees them sharp.
The scenes hold no photos: expect scene words ("a large white bag ..."), not a description.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from recipes.captioning.captions import load_image
from toolkit.data.cache import DataError, write_json_atomic
from toolkit.viz.image import caption_attention_figure

INPUT_KIND = "image"
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def read_photo(name: str, size: int) -> np.ndarray:
    """An RGB ``uint8 (size, size, 3)`` image from a file path or a ``skimage.data`` name."""
    path = Path(name)
    if path.suffix or path.exists():
        if not path.is_file():
            raise DataError(path, None, None, "image not found")
        return load_image(path, size)
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(f"{name!r} is neither an image file nor a skimage.data loader")
    array = np.asarray(loader())
    img = Image.fromarray(array).convert("RGB")
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def input_size(module) -> int:
    """The side images should have: the encoder's own input size, else the data's."""
    enc = module.model.regions.encoder
    return int(enc.image_size or module.data_state.get("image_size", 64))


def as_image(item: Any, size: int) -> np.ndarray:
    """A path, a ``skimage.data`` name, an array ``(H, W[, C])`` or a PIL image as RGB
    ``uint8 (size, size, 3)`` (any mode, any size: converted and resized like the data)."""
    if isinstance(item, (str, Path)):
        return read_photo(str(item), size)
    img = item if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item))
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _batch(module, images: np.ndarray) -> dict[str, torch.Tensor]:
    size = images.shape[1]
    n = len(images)
    batch = {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0,
        "boxes": torch.zeros(n, 1, 4),
        "box_mask": torch.zeros(n, 1, dtype=torch.bool),
    }
    if module.model.regions.encoder.regions == "boxes":
        # no boxes are known for a photo: one box covering the whole image
        batch["boxes"][:, 0] = torch.tensor([0.0, 0.0, size, size])
        batch["box_mask"][:] = True
    return {k: v.to(module.device) for k, v in batch.items()}


@torch.no_grad()
def caption(
    module, inputs: list[Any], beam_size: int | None = None, batch_size: int = 32
) -> list[dict[str, Any]]:
    """Per image: ``caption``, ``words``, ``attention`` ``(len(words) + 1, regions)`` (one
    row per word and ``<eos>``), the resized ``image``, ``grid`` (or ``boxes``)."""
    module.eval()
    size = input_size(module)
    grid = module.grid()
    results = []
    for start in range(0, len(inputs), batch_size):
        images = np.stack([as_image(x, size) for x in inputs[start : start + batch_size]])
        batch = _batch(module, images)
        for i, (words, attn) in enumerate(module.generate(batch, beam_size)):
            attn = np.zeros((len(words) + 1, 1)) if attn is None else attn.float().cpu().numpy()
            results.append({
                "caption": " ".join(words), "words": list(words), "attention": attn,
                "image": images[i], "grid": grid,
                "boxes": batch["boxes"][i].cpu().numpy() if grid is None else None,
            })  # fmt: skip
    return results


def _write(r: dict[str, Any], npz: Path, png: Path | None, title: str) -> Path | None:
    words = r["words"] + ["<eos>"]
    np.savez_compressed(
        npz, image=r["image"], words=np.array(words), attention=r["attention"],
        grid=np.array(r["grid"] or (0, 0)),
    )  # fmt: skip
    if png is None:
        return None
    return caption_attention_figure(r["image"], words, r["attention"], r["grid"], png,
                                    boxes=r["boxes"], title=title)  # fmt: skip


def caption_images(
    module, names: list[str], out_dir: str | Path, beam_size: int | None = None
) -> list[dict[str, Any]]:
    """Caption ``names`` with ``module`` (a ``CaptioningModule``); write ``<stem>.png`` (the
    per-word overlays), ``<stem>.npz`` and ``captions.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, r in zip(names, caption(module, names, beam_size), strict=True):
        stem = Path(name).stem
        figure = _write(r, out_dir / f"{stem}.npz", out_dir / f"{stem}.png", r["caption"])
        results.append({"image": name, "caption": r["caption"], "figure": str(figure)})
    write_json_atomic(out_dir / "captions.json", results)
    return results


def predict_records(
    module, inputs: list[str], out_dir: Path | None = None, plot: bool = False,
    beam_size: int | None = None, batch_size: int = 32,
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per image: ``caption``, ``words``; ``attention_file`` (image, words,
    attention, grid) and ``picture`` (the per-word overlays) when written."""
    results = caption(module, list(inputs), beam_size, batch_size)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    records = []
    for index, r in enumerate(results):
        record: dict[str, Any] = {"caption": r["caption"], "words": r["words"]}
        if out_dir is not None:
            name, picture = f"{index:06d}.npz", f"{index:06d}.png"
            png = Path(out_dir) / picture if plot else None
            _write(r, Path(out_dir) / name, png, f"#{index} {r['caption']}")
            record["attention_file"] = name
            if plot:
                record["picture"] = picture
        records.append(record)
    return records


def predict_arrays(module, inputs: list[Any], **options: Any) -> list[dict[str, Any]]:
    """``toolkit.api``: per image the caption (``output``) and the attention
    ``(words + <eos>, regions)`` with its axis labels."""
    out = []
    for r in caption(module, list(inputs), **options):
        regions = r["attention"].shape[1]
        out.append({"output": r["caption"], **r, "rows": [*r["words"], "<eos>"],
                    "columns": [f"region {s}" for s in range(regions)]})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a captioning checkpoint")
    parser.add_argument("--images", nargs="+", default=["astronaut", "chelsea"])
    parser.add_argument("--out", default="runs/captioning/predict")
    parser.add_argument("--beam-size", type=int, default=None)
    args = parser.parse_args(argv)
    from toolkit.training.checkpoints import load_module

    module = load_module(args.ckpt)
    for row in caption_images(module, args.images, args.out, args.beam_size):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
