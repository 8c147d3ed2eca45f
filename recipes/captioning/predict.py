"""Caption your own images (or scikit-image's sample photos) with a trained checkpoint.

    python -m recipes.captioning.predict --ckpt runs/.../last.ckpt \\
        --images astronaut chelsea my_photo.jpg --out runs/captioning/predict

Names without a file suffix are ``skimage.data`` loaders (``astronaut``, ``chelsea``,
``coffee`` ...). For each image it writes ``<name>.png`` (the image and one attention
overlay per generated word), ``<name>.npz`` (image, words, attention, grid) and one
``captions.json``. Photos are fed at the encoder's input size (224² for
``encoder=efficientnet_lite0``), so a model trained on the 64² scenes sees them sharp.
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

from toolkit.data.cache import write_json_atomic
from toolkit.data.captions import load_image
from toolkit.viz.image import caption_attention_figure


def read_photo(name: str, size: int) -> np.ndarray:
    """An RGB ``uint8 (size, size, 3)`` image from a file path or a ``skimage.data`` name."""
    path = Path(name)
    if path.suffix:
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


@torch.no_grad()
def caption_images(
    module, names: list[str], out_dir: str | Path, beam_size: int | None = None
) -> list[dict[str, Any]]:
    """Caption ``names`` with ``module`` (a ``CaptioningModule``); write figures + arrays."""
    module.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = input_size(module)
    images = np.stack([read_photo(n, size) for n in names])  # (B, S, S, 3)
    batch = {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0,
        "boxes": torch.zeros(len(names), 1, 4),
        "box_mask": torch.zeros(len(names), 1, dtype=torch.bool),
    }
    if module.model.regions.encoder.regions == "boxes":
        # no boxes are known for a photo: one box covering the whole image
        batch["boxes"][:, 0] = torch.tensor([0.0, 0.0, size, size])
        batch["box_mask"][:] = True
    grid = module.grid()
    results = []
    for name, image, (words, attn) in zip(
        names, images, module.generate(batch, beam_size), strict=True
    ):
        stem = Path(name).stem
        attn = np.zeros((len(words) + 1, 1)) if attn is None else attn.numpy()
        np.savez_compressed(
            out_dir / f"{stem}.npz", image=image, words=np.array(words + ["<eos>"]),
            attention=attn, grid=np.array(grid or (0, 0)),
        )  # fmt: skip
        figure = caption_attention_figure(
            image, words + ["<eos>"], attn, grid, out_dir / f"{stem}.png",
            boxes=batch["boxes"][0].numpy() if grid is None else None, title=" ".join(words),
        )  # fmt: skip
        results.append({"image": name, "caption": " ".join(words), "figure": str(figure)})
    write_json_atomic(out_dir / "captions.json", results)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a captioning checkpoint")
    parser.add_argument("--images", nargs="+", default=["astronaut", "chelsea"])
    parser.add_argument("--out", default="runs/captioning/predict")
    parser.add_argument("--beam-size", type=int, default=None)
    args = parser.parse_args(argv)
    from toolkit.evaluate import load_module

    module = load_module(args.ckpt)
    for row in caption_images(module, args.images, args.out, args.beam_size):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
