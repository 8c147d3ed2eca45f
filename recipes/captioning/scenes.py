"""Generated captioned scenes: Fashion-MNIST items and coloured shapes on a small canvas.

Each image holds 2-4 objects at random positions and two sizes. Every object is a coloured
Fashion-MNIST item (Debian ``dataset-fashion-mnist``, read from its idx ``.gz`` files) or a
coloured shape drawn with PIL. The generator knows each object's box, so grounding (does the
attention land on the named object?) and hallucination (CHAIR) are exact.

Every image gets three captions worded differently, all naming every object with its size
and colour, in left-to-right order so that the caption follows from the image::

    a small red sneaker , a large blue circle and a small green bag from left to right
    a small red sneaker left of a large blue circle , which is above a small green bag
    there are three objects : a small red sneaker , a large blue circle and a small green bag

Captions are stored tokenised (single spaces) with ``refs``: per token the index of the
object it refers to (-1 for none), so every object word maps to a recorded box.

Layout of a built corpus (``cache_root()/scenes/<key>/``): ``{split}_images.npy`` (uint8
``(N, S, S, 3)``), ``{split}.jsonl`` (one image per line: ``objects``, ``captions``) and
``manifest.json`` (sources, checksums, counts, seed, settings).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from toolkit.data.cache import DataError, locked_build, sha256_file, write_json_atomic
from toolkit.paths import cache_root

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# One-word names of the ten Fashion-MNIST classes (ids 0..9) so that one token names one object.
FASHION_NAMES = (
    "t-shirt", "trousers", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)  # fmt: skip
SHAPES = ("circle", "square", "triangle")
OBJECT_WORDS = FASHION_NAMES + SHAPES
COLOURS = {
    "red": (225, 45, 45),
    "green": (50, 190, 60),
    "blue": (60, 100, 240),
    "yellow": (235, 220, 50),
    "purple": (170, 70, 215),
    "white": (240, 240, 240),
}
SIZES = ("small", "large")
NUMBERS = {2: "two", 3: "three", 4: "four"}
SPLITS = ("train", "valid", "test")
BUILD_VERSION = 1


@dataclass(frozen=True)
class SceneConfig:
    """What a scene corpus is built from; its hash names the cache folder.

    Args:
        train / valid / test: number of images per split.
        image_size: canvas side in pixels.
        min_objects / max_objects: objects per image.
        small / large: side range (pixels, inclusive) of small and large objects.
        max_overlap: largest allowed intersection of two boxes, as a share of the smaller box.
        shape_share: probability that an object is a shape rather than a Fashion-MNIST item.
        seed: random seed; the same config gives the same corpus byte for byte.
    """

    train: int = 10000
    valid: int = 1000
    test: int = 1000
    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 4
    small: tuple[int, int] = (14, 18)
    large: tuple[int, int] = (26, 32)
    max_overlap: float = 0.05
    shape_share: float = 0.4
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class SceneObject:
    """One object: what it is, its colour and size word and its box ``[x0, y0, x1, y1)``."""

    kind: str  # "fashion" or "shape"
    label: str  # the noun of OBJECT_WORDS
    colour: str
    size: str
    box: list[int]
    item: int = -1  # Fashion-MNIST item index (-1 for shapes)

    def words(self) -> list[str]:
        return [self.size, self.colour, self.label]


@dataclass
class Caption:
    """A tokenised caption and, per token, the index of the object it names (-1: none)."""

    text: str
    refs: list[int] = field(default_factory=list)


# ----- Fashion-MNIST idx files ------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """Read a (gzipped) idx file (LeCun's MNIST format) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(path, None, "magic", "not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(path, None, "dims", f"header says {dims}, file has {body.size} bytes")
    return body.reshape(dims)


def load_fashion(part: str, root: str | Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``part`` = ``train`` or ``t10k`` -> images ``(N, 28, 28)`` uint8, labels ``(N,)``."""
    root = Path(root)
    images = root / f"{part}-images-idx3-ubyte.gz"
    labels = root / f"{part}-labels-idx1-ubyte.gz"
    for p in (images, labels):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} not found: install the Debian package dataset-fashion-mnist"
            )
    return read_idx(images), read_idx(labels)


# ----- generation ---------------------------------------------------------------------------
def _overlap(a: list[int], b: list[int]) -> float:
    """Intersection area of boxes ``a`` and ``b`` over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def _place(rng: random.Random, cfg: SceneConfig, n: int) -> list[tuple[str, list[int]]]:
    """Sizes and non-overlapping boxes for ``n`` objects (rejection sampling)."""
    while True:
        placed: list[tuple[str, list[int]]] = []
        for _ in range(n):
            for _attempt in range(50):
                size = rng.choice(SIZES)
                lo, hi = cfg.small if size == "small" else cfg.large
                side = rng.randint(lo, hi)
                x0 = rng.randint(0, cfg.image_size - side)
                y0 = rng.randint(0, cfg.image_size - side)
                box = [x0, y0, x0 + side, y0 + side]
                if all(_overlap(box, b) <= cfg.max_overlap for _, b in placed):
                    placed.append((size, box))
                    break
        if len(placed) == n:
            return placed


def _draw_shape(canvas: Image.Image, shape: str, box: list[int], colour: tuple) -> None:
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif shape == "square":
        m = max(1, (x1 - x0) // 10)  # a square a little inside its box, like the items
        draw.rectangle([x0 + m, y0 + m, x1 - m, y1 - m], fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _draw_item(canvas: np.ndarray, item: np.ndarray, box: list[int], colour: tuple) -> None:
    """Tint a greyscale 28x28 item with ``colour`` and paste it (as alpha) into ``box``."""
    side = box[2] - box[0]
    alpha = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR), np.float32)
    alpha = (alpha / 255.0)[..., None]  # (s, s, 1)
    region = canvas[box[1] : box[3], box[0] : box[2]].astype(np.float32)
    tinted = alpha * np.asarray(colour, np.float32) + (1 - alpha) * region
    canvas[box[1] : box[3], box[0] : box[2]] = np.clip(tinted + 0.5, 0, 255).astype(np.uint8)


def _relation(a: SceneObject, b: SceneObject) -> list[str]:
    """Words placing ``a`` relative to ``b`` along the axis where they are further apart."""
    ax, ay = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    bx, by = (b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2
    if abs(ax - bx) >= abs(ay - by):
        return ["left", "of"] if ax < bx else ["right", "of"]
    return ["above"] if ay < by else ["below"]


def make_captions(objects: list[SceneObject]) -> list[Caption]:
    """The three reference captions of a scene (objects in left-to-right order)."""
    order = sorted(range(len(objects)), key=lambda i: objects[i].box[0] + objects[i].box[2])

    def phrase(i: int) -> tuple[list[str], list[int]]:
        words = ["a", *objects[i].words()]
        return words, [-1] + [i] * 3

    def listing(idx: list[int]) -> tuple[list[str], list[int]]:
        words: list[str] = []
        refs: list[int] = []
        for k, i in enumerate(idx):
            if k:
                sep = ["and"] if k == len(idx) - 1 else [","]
                words += sep
                refs += [-1]
            w, r = phrase(i)
            words += w
            refs += r
        return words, refs

    captions = []
    words, refs = listing(order)
    captions.append((words + ["from", "left", "to", "right"], refs + [-1] * 4))
    words, refs = phrase(order[0])
    for k in range(1, len(order)):
        rel = _relation(objects[order[k - 1]], objects[order[k]])
        joint = rel if k == 1 else [",", "which", "is", *rel]
        w, r = phrase(order[k])
        words += joint + w
        refs += [-1] * len(joint) + r
    captions.append((words, refs))
    words, refs = listing(order)
    head = ["there", "are", NUMBERS[len(objects)], "objects", ":"]
    captions.append((head + words, [-1] * len(head) + refs))
    return [Caption(" ".join(w), r) for w, r in captions]


def generate_scene(
    rng: random.Random, cfg: SceneConfig, items: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, list[SceneObject], list[Caption]]:
    """One image ``(S, S, 3)`` uint8, its objects and its captions."""
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    background = rng.randint(0, 40)
    canvas = Image.new("RGB", (cfg.image_size, cfg.image_size), (background,) * 3)
    objects = []
    for size, box in _place(rng, cfg, n):
        colour = rng.choice(sorted(COLOURS))
        if rng.random() < cfg.shape_share:
            objects.append(SceneObject("shape", rng.choice(SHAPES), colour, size, box))
        else:
            item = rng.randrange(len(items))
            label = FASHION_NAMES[int(labels[item])]
            objects.append(SceneObject("fashion", label, colour, size, box, item))
    for obj in objects:
        if obj.kind == "shape":
            _draw_shape(canvas, obj.label, obj.box, COLOURS[obj.colour])
    array = np.array(canvas)
    for obj in objects:
        if obj.kind == "fashion":
            _draw_item(array, items[obj.item], obj.box, COLOURS[obj.colour])
    return array, objects, make_captions(objects)


# ----- build and load -------------------------------------------------------------------------
def build_scene_corpus(
    cfg: SceneConfig | None = None,
    root: str | Path | None = None,
    fashion_dir: str | Path = FASHION_DIR,
    progress: bool = True,
) -> Path:
    """Build the corpus of ``cfg`` once into the cache (atomically) and return its folder.

    Train and valid items come from Fashion-MNIST's training part, test items from its
    ``t10k`` part, so test scenes show unseen items.
    """
    from tqdm import tqdm

    cfg = cfg or SceneConfig()
    folder = Path(root or cache_root()) / "scenes" / cfg.key()
    if (folder / "manifest.json").is_file():
        return folder
    fashion_dir = Path(fashion_dir)
    sources = {
        part: load_fashion(part, fashion_dir) for part in ("train", "t10k")
    }  # images, labels
    with locked_build(folder) as tmp:
        if tmp is None:  # another process built it meanwhile
            return folder
        counts = {}
        total = cfg.train + cfg.valid + cfg.test
        bar = tqdm(total=total, desc="building scenes", unit="img", disable=not progress)
        for split_id, split in enumerate(SPLITS):
            n = getattr(cfg, split)
            rng = random.Random(f"{cfg.seed}-{split_id}")
            items, labels = sources["t10k" if split == "test" else "train"]
            if split != "test":  # train and valid draw from disjoint halves of the items
                half = len(items) * 9 // 10
                sl = slice(0, half) if split == "train" else slice(half, None)
                items, labels = items[sl], labels[sl]
            images = np.zeros((n, cfg.image_size, cfg.image_size, 3), np.uint8)
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for i in range(n):
                    images[i], objects, captions = generate_scene(rng, cfg, items, labels)
                    record = {
                        "id": f"{split}-{i:06d}",
                        "objects": [asdict(o) for o in objects],
                        "captions": [asdict(c) for c in captions],
                    }
                    f.write(json.dumps(record) + "\n")
                    bar.update(1)
            np.save(tmp / f"{split}_images.npy", images)
            counts[split] = n
        bar.close()
        write_json_atomic(
            tmp / "manifest.json",
            {
                "corpus": "scenes",
                "version": BUILD_VERSION,
                "config": asdict(cfg),
                "counts": counts,
                "sources": {
                    "package": "dataset-fashion-mnist (Debian)",
                    "files": {
                        p.name: sha256_file(p) for p in sorted(fashion_dir.glob("*-ubyte.gz"))
                    },
                },
                "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir())},
            },
        )
    return folder


def load_scene_split(folder: str | Path, split: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Images ``(N, S, S, 3)`` uint8 and records (``id``, ``objects``, ``captions``)."""
    folder = Path(folder)
    images = np.load(folder / f"{split}_images.npy")
    path = folder / f"{split}.jsonl"
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(path, line_no, None, f"invalid JSON: {err}") from err
    if len(records) != len(images):
        raise DataError(path, None, None, f"{len(records)} records but {len(images)} images")
    return images, records
