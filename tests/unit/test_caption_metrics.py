"""Caption metrics against pycocoevalcap and hand-computed values; grounding and CHAIR on
hand-built attention maps and captions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolkit.metrics.caption import chair, cider_d, corpus_bleu, exact_match
from toolkit.metrics.grounding import box_union_share, grid_peak_point, pointing_game

HYPS = [
    "a small red circle left of a large blue bag",
    "there are two objects : a red square and a bag",
    "a large green sneaker",
    "a dress a dress a dress",
]
REFS = [
    ["a small red circle left of a large blue bag", "a small red circle and a large blue bag"],
    [
        "there are two objects : a small red square and a large white bag",
        "a red square above a bag",
    ],
    ["a large green sneaker from left to right", "a big green shoe", "there is a green sneaker"],
    ["a small yellow dress", "one dress on the left"],
]


def test_bleu_hand_computed():
    # hyp "a b c d", ref "a b c e": p1 = 3/4, p2 = 2/3, equal length -> no penalty
    b = corpus_bleu(["a b c d"], [["a b c e"]])
    assert b[0] == pytest.approx(0.75)
    assert b[1] == pytest.approx(math.sqrt(0.75 * 2 / 3))
    assert b[3] == 0.0  # no matching 4-gram
    # clipping: "the the the" vs "the cat": p1 = 1/3; closest ref length 2 < 3: bp = 1
    assert corpus_bleu(["the the the"], [["the cat"]])[0] == pytest.approx(1 / 3)
    # brevity: hyp of 2 words, closest ref 4 words: bp = exp(1 - 4/2)
    assert corpus_bleu(["a b"], [["a b c d"]])[0] == pytest.approx(math.exp(-1))


def test_bleu_and_cider_match_pycocoevalcap():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts = {i: r for i, r in enumerate(REFS)}
    res = {i: [h] for i, h in enumerate(HYPS)}
    ref_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    ours = corpus_bleu(HYPS, REFS)
    assert ours == pytest.approx(ref_bleu, abs=1e-6)
    ref_cider, ref_items = Cider().compute_score(gts, res)
    mean, items = cider_d(HYPS, REFS)
    assert mean == pytest.approx(ref_cider, abs=1e-9)
    assert items == pytest.approx(list(ref_items), abs=1e-9)
    # CIDEr-D clipping: repeating words does not help ("a dress a dress a dress")
    assert items[3] < items[2] < items[0]


def test_chair_counts_invented_object():
    out = chair(
        ["a red circle and a blue bag", "a sneaker and a sneaker", "a dress left of a coat"],
        [{"circle", "bag"}, {"sneaker"}, {"dress"}],
        {"circle", "bag", "sneaker", "dress", "coat"},
    )
    # mentions: {circle, bag}, {sneaker}, {dress, coat} = 5; coat invented
    assert out["mentions"] == 5 and out["hallucinated"] == 1
    assert out["chair_i"] == pytest.approx(1 / 5)
    assert out["chair_s"] == pytest.approx(1 / 3)


def test_exact_match():
    assert exact_match(["a b", "c"], [["a b", "x"], ["d"]]) == 0.5


def test_pointing_game_grid_hits_and_misses():
    objects = [
        {"label": "circle", "colour": "red", "size": "small", "box": [0, 0, 16, 16]},
        {"label": "bag", "colour": "blue", "size": "large", "box": [32, 32, 64, 64]},
        {"label": "bag", "colour": "red", "size": "small", "box": [40, 0, 56, 16]},
    ]
    tokens = ["a", "red", "circle", "and", "a", "blue", "bag"]
    attention = np.zeros((len(tokens) + 1, 16))  # 4 x 4 grid over 64 x 64: 16 px cells
    attention[2, 0] = 1.0  # circle -> cell (0, 0): centre (8, 8), inside the circle's box
    attention[6, 4 * 0 + 2] = 1.0  # blue bag -> cell (0, 2), centre (40, 8): red bag's box
    res = pointing_game(tokens, attention, objects, (64, 64), grid=(4, 4))
    assert (res.hits, res.total) == (1, 2)  # colour picks the blue bag: a miss
    assert res.chance == pytest.approx((16 * 16 / 64**2 + 32 * 32 / 64**2) / 2)
    attention[6] = 0
    attention[6, 15] = 1.0  # cell (3, 3), centre (56, 56): inside the blue bag
    assert pointing_game(tokens, attention, objects, (64, 64), grid=(4, 4)).hits == 2
    # "sneaker" is not in the image: not scored
    assert pointing_game(["sneaker"], np.ones((1, 16)), objects, (64, 64), (4, 4)).total == 0


def test_pointing_game_box_regions():
    objects = [{"label": "circle", "box": [0, 0, 8, 8]}, {"label": "bag", "box": [8, 8, 16, 16]}]
    attention = np.array([[0.1, 0.9], [0.8, 0.2]])
    res = pointing_game(["bag", "circle"], attention, objects, (16, 16), grid=None)
    assert (res.hits, res.total) == (2, 2) and res.chance == pytest.approx(0.5)


def test_geometry_helpers():
    assert grid_peak_point(np.array([0, 0, 0, 1.0]), (2, 2), (10, 20)) == (15.0, 7.5)
    assert box_union_share([[0, 0, 5, 10], [0, 0, 10, 5]], 10, 10) == pytest.approx(0.75)


def test_uniform_attention_points_at_chance_not_at_the_first_cell():
    """The `uniform` block (every visible region equal): ties are broken at random, so its
    pointing-game hit rate is the chance rate, not the first cell's luck."""
    import torch

    from toolkit.attention import build

    block = build("uniform", query_dim=4, key_dim=4)
    rng = np.random.default_rng(0)
    hits = total = chance = 0.0
    for _ in range(300):
        x0, y0 = rng.integers(0, 24, size=2)
        objects = [{"label": "bag", "box": [float(x0), float(y0), x0 + 8.0, y0 + 8.0]}]
        q, k = torch.randn(1, 1, 4), torch.randn(1, 16, 4)
        _, w = block(q, k, k, need_weights=True)  # (1, 1, 16): a 4x4 grid, all 1/16
        res = pointing_game(["bag"], w[0].numpy(), objects, (32, 32), grid=(4, 4))
        hits, total, chance = hits + res.hits, total + res.total, chance + res.chance_sum
    assert chance / total == pytest.approx(1 / 16, abs=0.01)
    assert hits / total == pytest.approx(chance / total, abs=0.035)  # 3 sigma at n = 300
    # the old argmax took cell 0 every time: a box over it would have scored 1.0
    corner = [{"label": "bag", "box": [0.0, 0.0, 8.0, 8.0]}]
    res = pointing_game(["bag"] * 40, np.full((40, 16), 1 / 16), corner, (32, 32), grid=(4, 4))
    assert res.hits / res.total < 0.3
