"""Grounding diagnostics: does attention point at the object a word names? (pointing game)

For each generated word that names an object present in the image, take the attention of
the step that generated it, find its peak region and count a hit when the peak lies inside
the box of a matching object (Zhang et al. 2016's pointing game, applied to attention).
Chance level is the expected hit rate of a peak placed uniformly at random over the image:
the share of the image covered by the matching boxes (for box regions: the share of the
boxes that match), averaged over the same words.

Regions are either grid cells (peak position = the cell's centre) or boxes (the peak region
is a box; a hit when that box is one of the matching objects'). Works for any recipe whose
items have boxes: image captions here, but also e.g. region-grounded VQA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.metrics.attention import peak_indices

Box = Sequence[float]  # x0, y0, x1, y1 (x1, y1 exclusive), in image pixels


@dataclass
class PointingResult:
    """Hits, words scored, and the summed chance (box area share) over those words."""

    hits: int = 0
    total: int = 0
    chance_sum: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.hits / self.total if self.total else 0.0

    @property
    def chance(self) -> float:
        return self.chance_sum / self.total if self.total else 0.0

    def add(self, other: PointingResult) -> None:
        self.hits += other.hits
        self.total += other.total
        self.chance_sum += other.chance_sum


def box_union_share(boxes: Sequence[Box], height: int, width: int) -> float:
    """Share of an ``height x width`` image covered by the union of ``boxes``."""
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[max(0, int(y0)) : int(np.ceil(y1)), max(0, int(x0)) : int(np.ceil(x1))] = True
    return float(covered.mean())


def grid_peak_point(
    weights: np.ndarray, grid: tuple[int, int], image_hw: tuple[int, int], seed: int = 0
):
    """Image coordinates ``(x, y)`` of the centre of the cell holding the peak weight (a
    tie between cells is broken at random, ``seed``: uniform attention points at random).

    ``weights (h·w,)`` over a row-major ``grid = (h, w)`` covering the image.
    """
    h, w = grid
    idx = int(peak_indices(weights[: h * w], seed))
    row, col = divmod(idx, w)
    return (col + 0.5) * image_hw[1] / w, (row + 0.5) * image_hw[0] / h


def inside(point: tuple[float, float], box: Box) -> bool:
    x, y = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def matching_objects(
    tokens: Sequence[str], position: int, objects: Sequence[dict], attribute_window: int = 2
) -> list[int]:
    """Indices of the objects the noun at ``tokens[position]`` can refer to.

    Objects with that ``label``; when the preceding ``attribute_window`` words include
    attributes (``colour``, ``size``) that single out some of them, only those.
    """
    word = tokens[position]
    candidates = [i for i, o in enumerate(objects) if o["label"] == word]
    before = set(tokens[max(0, position - attribute_window) : position])
    for attr in ("colour", "size"):
        narrowed = [i for i in candidates if objects[i].get(attr) in before]
        if narrowed:
            candidates = narrowed
    return candidates


def pointing_game(
    tokens: Sequence[str],
    attention: np.ndarray,
    objects: Sequence[dict],
    image_hw: tuple[int, int],
    grid: tuple[int, int] | None = None,
) -> PointingResult:
    """Pointing game over one generated caption.

    Args:
        tokens: the generated words.
        attention: ``(len(tokens) [+1], S)`` attention of the step that produced each word.
        objects: the image's objects: dicts with ``label``, ``box`` (and ``colour``,
            ``size`` for disambiguation). Words that are no object's label are skipped
            (hallucinations are CHAIR's business).
        image_hw: image ``(height, width)`` in the boxes' pixels.
        grid: ``(h, w)`` when regions are grid cells; ``None`` when region ``k`` is the box
            of ``objects[k]``.
    """
    result = PointingResult()
    labels = {o["label"] for o in objects}
    for t, word in enumerate(tokens):
        if word not in labels or t >= len(attention):
            continue
        candidates = matching_objects(tokens, t, objects)
        boxes = [objects[i]["box"] for i in candidates]
        if grid is None:
            hit = int(peak_indices(attention[t][: len(objects)], t)) in candidates
        else:
            point = grid_peak_point(attention[t], grid, image_hw, seed=t)
            hit = any(inside(point, b) for b in boxes)
        result.hits += int(hit)
        result.total += 1
        # chance: a random cell lands in the boxes; a random box region is a candidate
        share = len(candidates) / len(objects) if grid is None else None
        result.chance_sum += box_union_share(boxes, *image_hw) if share is None else share
    return result
