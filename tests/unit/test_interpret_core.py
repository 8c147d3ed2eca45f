"""toolkit.interpret: attention rollout against a hand computation, and the erasure test on a
hand-built classifier whose answer is known (it reads exactly one token)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from toolkit.attention import masked_softmax
from toolkit.interpret.erasure import (
    ErasureResults,
    erasure_drops,
    grad_x_input,
    ratio_of_means,
    remove_top,
)
from toolkit.interpret.rollout import attention_rollout

# ------------------------------------------------------------------------------ rollout
A1 = torch.tensor([[1, 0, 0], [1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
A2 = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
# By hand: Â1 = rownorm(A1 + I) = [[1, 0, 0], [1/4, 3/4, 0], [1/6, 1/6, 2/3]],
# Â2 = rownorm(A2 + I) = [[1/2, 1/2, 0], [0, 1/2, 1/2], [1/2, 0, 1/2]], and R = Â2 Â1:
ROLLOUT = torch.tensor(
    [[5 / 8, 3 / 8, 0], [5 / 24, 11 / 24, 1 / 3], [7 / 12, 1 / 12, 1 / 3]], dtype=torch.float64
)


def test_rollout_equals_hand_computation():
    out = attention_rollout([A1[None], A2[None]])
    assert out.shape == (1, 3, 3)
    assert torch.allclose(out[0].double(), ROLLOUT, atol=1e-6)
    assert torch.allclose(out.sum(-1), torch.ones(1, 3), atol=1e-6)


def test_rollout_averages_heads():
    d = torch.tensor([[0.0, 0, 0], [0.2, -0.2, 0], [-0.1, 0.3, -0.2]], dtype=torch.float64)
    heads1 = torch.stack([A1 + d, A1 - d])[None]  # (1, 2, 3, 3): head mean = A1
    heads2 = torch.stack([A2, A2])[None]
    out = attention_rollout([heads1, heads2])
    assert torch.allclose(out[0].double(), ROLLOUT, atol=1e-6)


def test_rollout_masks_padding():
    """A padded 4th position: its key gets 0 everywhere (even where a map put weight on
    it: here the padded query row holds garbage), its row is 0, real rows sum to 1."""
    pad1 = torch.zeros(1, 4, 4, dtype=torch.float64)
    pad2 = torch.zeros(1, 4, 4, dtype=torch.float64)
    pad1[0, :3, :3], pad2[0, :3, :3] = A1, A2
    pad1[0, 3], pad2[0, 3] = 0.25, torch.tensor([0.1, 0.2, 0.3, 0.4])
    mask = torch.tensor([[True, True, True, False]])
    out = attention_rollout([pad1, pad2], mask)
    assert torch.allclose(out[0, :3, :3].double(), ROLLOUT, atol=1e-6)
    assert out[0, :, 3].abs().max() == 0 and out[0, 3].abs().max() == 0
    assert torch.allclose(out[0, :3].sum(-1), torch.ones(3), atol=1e-6)


def test_rollout_of_one_layer_without_residual_is_the_map():
    out = attention_rollout([A1[None]], residual=False)
    assert torch.allclose(out[0].double(), A1, atol=1e-6)


# ----------------------------------------------------------------------------- erasure
class OneTokenReader(nn.Module):
    """Binary classifier over tokens ``x (B, T, 3)`` = (flag, value, distractor): attention
    scores are ``40 · flag``, so all attention (1 - O(T e^-40)) is on the flagged token, and
    ``P(class 1) = σ(10 (pooled value - 1/2))`` with the flagged token's value 1 and every
    other value 0. Removing a token = masking it as a key."""

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = masked_softmax(40.0 * x[..., 0], keep)  # (B, T)
        pooled = (weights * x[..., 1]).sum(-1)
        return torch.sigmoid(10.0 * (pooled - 0.5)), weights


def _one_token_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(6, 13, (n,), generator=gen)  # 6..12 tokens, padded to 12
    valid = torch.arange(12)[None] < lengths[:, None]
    x = torch.zeros(n, 12, 3)
    x[..., 2] = torch.rand(n, 12, generator=gen)  # ignored by the model
    where = (torch.rand(n, generator=gen) * lengths).long()  # the token it reads
    x[torch.arange(n), where, 0] = 1.0
    x[torch.arange(n), where, 1] = 1.0
    return x * valid[..., None], valid


def test_remove_top_removes_the_k_largest_valid_inputs():
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    importance = torch.tensor([[0.1, 0.5, 0.3, 9.0], [0.2, 0.1, 9.0, 9.0]])
    assert remove_top(valid, importance, 1).tolist() == [[True, False, True, False],
                                                         [False, True, False, False]]  # fmt: skip
    assert remove_top(valid, importance, 2).tolist() == [[True, False, False, False],
                                                         [False, False, False, False]]  # fmt: skip
    assert not remove_top(valid, importance, 5).any()
    assert remove_top(valid, importance, 0).equal(valid)


def test_erasure_on_a_classifier_that_reads_one_token():
    """Attention erasure removes the whole prediction (drop = the full probability drop,
    σ(5) - σ(-5) = 0.987, for every k); random erasure removes it with probability k/T, so
    its mean drop is the full drop times mean(min(k, T)/T) (within 0.03 over 3,000 examples,
    about 3 standard errors); gradient × input saliency finds the token (same drop as
    attention); the ratio attention / random is 1 / mean(k/T) and its bootstrap interval
    holds that value."""
    gen = torch.Generator().manual_seed(0)
    model = OneTokenReader()
    x, valid = _one_token_batch(3000, gen)
    lengths = valid.sum(1).double()
    full = torch.sigmoid(torch.tensor(5.0)) - torch.sigmoid(torch.tensor(-5.0))

    def score(inputs, keep):
        return model(inputs, keep)[0]

    inputs = x.clone().requires_grad_(True)
    prob, attention = model(inputs, valid)
    saliency = grad_x_input(inputs, prob)
    assert (saliency.argmax(1) == x[..., 0].argmax(1)).all()  # saliency finds the token
    assert (attention.argmax(1) == x[..., 0].argmax(1)).all()

    ks = [1, 2, 4]
    results = ErasureResults(ks)
    base, drops = erasure_drops(
        score, x, valid, {"attention": attention.detach(), "saliency": saliency}, ks, gen
    )
    results.add(base, drops)
    summary = results.summary(resamples=500, seed=0)
    assert summary["examples"] == 3000
    assert summary["score_mean"] == pytest.approx(float(torch.sigmoid(torch.tensor(5.0))), 1e-5)
    for j, k in enumerate(ks):
        assert torch.allclose(drops["attention"][:, j], full.expand(3000), atol=1e-5)
        assert torch.allclose(drops["saliency"][:, j], full.expand(3000), atol=1e-5)
        expected = float(full) * float((k / lengths).clamp(max=1).mean())
        got = summary["methods"]["random"]["drop"][str(k)]
        assert got == pytest.approx(expected, abs=0.03), (k, got, expected)
        assert summary["methods"]["attention"]["drop"][str(k)] == pytest.approx(float(full), 1e-5)
        ratio = summary["ratio_to_random"]["attention"][str(k)]
        lo, hi = ratio["ci95"]
        assert lo <= float(full) / expected * 1.1 and hi >= float(full) / expected * 0.9
        assert lo > 1.5  # attention is far better than chance here
    # AOPC over ks = [1, 2, 4]: three full drops and the k = 0 term, / 4
    assert summary["methods"]["attention"]["aopc"] == pytest.approx(3 * float(full) / 4, 1e-5)


def test_grouped_results_average_rows_per_example():
    results = ErasureResults([1])
    base = torch.tensor([1.0, 0.0, 0.5])
    drops = {"attention": torch.tensor([[1.0], [0.0], [0.4]]), "random": torch.ones(3, 1)}
    results.add(base, drops, groups=torch.tensor([7, 7, 9]))
    per_base, per_drops = results.per_example()
    assert per_base.tolist() == [0.5, 0.5]
    assert per_drops["attention"][:, 0].tolist() == pytest.approx([0.5, 0.4])


def test_ratio_without_positive_random_drop_is_null_with_reason():
    out = ratio_of_means(np.ones(10), np.zeros(10))
    assert out["value"] is None and "not positive" in out["reason"]
