"""A new attention type is one module (its class, registered with its capabilities) plus its
``conf/attention/<name>.yaml``; nothing else in the toolkit, the recipes or the tests lists
type names.

The proof: a throw-away type is written to one file in a temporary folder that joins the
``toolkit.attention`` package, the package is re-imported (it imports every module it
holds), and the type then runs through the generic block tests of ``test_attention.py``
(their parameter grids, with the cases the registry now yields), through ``toolkit.nn`` and
through two recipe models. It is unregistered after every test, so the tests that iterate
the registry elsewhere (e.g. "every registered name has a config") never see it.
"""

from __future__ import annotations

import itertools
import sys
import textwrap

import pytest
import test_attention as generic  # the generic block tests (tests/unit is on sys.path)
import torch

import toolkit.attention
from toolkit.attention import available, built_types, capabilities, types_with, unregister

NAME = "throwaway_cosine"

# Cosine-similarity attention with a learned temperature: softmax(exp(s) · cos(q, k)) v.
SOURCE = '''
"""Cosine attention with a learned log-temperature ``s``: ``softmax(e^s cos(q_i, k_j)) v``."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.attention.base import AttentionBase, masked_softmax, zero_fully_masked
from toolkit.attention.registry import Capabilities, register


@register(
    "throwaway_cosine",
    Capabilities(rnn_style="luong", test_options={"temperature": 4.0}),
)
class CosineAttention(AttentionBase):
    def __init__(self, query_dim=None, key_dim=None, temperature=10.0, dropout=0.0,
                 causal=False):
        super().__init__(dropout=dropout, causal=causal)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def _unit(self, query, key):
        return F.normalize(query, dim=-1) * self.log_temperature.exp(), F.normalize(key, dim=-1)

    def eager(self, query, key, value, mask):
        q, k = self._unit(query, key)
        mask = self.dense_mask(mask, q.shape[-2], k.shape[-2], q.device)
        weights = masked_softmax(q @ k.transpose(-1, -2), mask)
        return self.drop(weights) @ value, weights

    def fast(self, query, key, value, mask):
        q, k = self._unit(query, key)
        mask = self.dense_mask(mask, q.shape[-2], k.shape[-2], q.device)
        out = F.scaled_dot_product_attention(
            q, k, value, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,
        )
        return zero_fully_masked(out, mask)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The throw-away type, registered by dropping its file into the package's path."""
    before = available()
    assert NAME not in before
    (tmp_path / f"{NAME}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.setattr(toolkit.attention, "__path__", [*toolkit.attention.__path__, str(tmp_path)])
    toolkit.attention._import_modules()  # what importing the package does, now with the file
    try:
        assert available() == sorted([*before, NAME])
        yield NAME
    finally:
        if NAME in available():
            unregister(NAME)
        sys.modules.pop(f"toolkit.attention.{NAME}", None)
    assert available() == before


def plugin_cases() -> list[generic.Case]:
    """The cases of ``test_attention.py`` the registry now yields for the new type."""
    return [c for c in generic.registry_cases() if NAME in (c.name, c.core)]


def grid(test, cases: list[generic.Case]) -> list[dict]:
    """Every argument combination of a generic test (its ``parametrize`` marks), with the
    new type's ``cases`` as its ``case`` (or their names as its ``name``)."""
    axes: dict[str, list] = {}
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            axes[mark.args[0]] = list(mark.args[1])
    if "case" in axes:
        axes["case"] = cases
    if "name" in axes:
        axes["name"] = [c.name for c in cases if not c.multihead]
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


GENERIC = [
    "test_shapes_and_weight_rows",
    "test_core_on_4d_inputs_with_4d_masks",
    "test_gradcheck",
    "test_masked_keys_never_matter",
    "test_padding_invariance",
    "test_fully_masked_rows_are_zero_and_finite",
    "test_causal_never_sees_the_future",
    "test_fast_matches_eager",
    "test_fast_path_is_as_declared",
    "test_fast_path_really_runs",
    "test_capture_collects_maps_by_path",
    "test_dropout_train_vs_eval",
    "test_property_fast_eager_and_masked_keys",
]


def test_the_registry_yields_the_new_type_alone_and_as_a_multihead_core(plugin):
    caps = capabilities(plugin)
    assert caps.multihead_core and caps.fast_path and not caps.mixed_widths
    assert caps.test_options == {"temperature": 4.0}
    assert [str(c) for c in plugin_cases()] == [plugin, f"multihead-{plugin}"]
    assert plugin in types_with(cross_attention=True, pooling_query=True, rnn_style="luong")
    block = toolkit.attention.build(plugin, **caps.test_options)
    assert type(block).registry_name == plugin and block.capabilities is caps


@pytest.mark.parametrize("test_name", GENERIC)
def test_the_new_type_passes_the_generic_block_tests(plugin, test_name, monkeypatch):
    test = getattr(generic, test_name)
    runs = grid(test, plugin_cases())
    assert runs
    for kwargs in runs:
        if "monkeypatch" in test.__code__.co_varnames[: test.__code__.co_argcount]:
            kwargs["monkeypatch"] = monkeypatch
        test(**kwargs)
    assert plugin in available()


def test_the_generic_tests_would_catch_a_wrong_type(plugin, monkeypatch):
    """The same tests fail for a type whose weights leak onto masked keys."""
    cls = toolkit.attention.get(plugin)

    def leaky(self, query, key, value, mask):
        q, k = self._unit(query, key)
        weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # ignores the mask
        return weights @ value, weights

    monkeypatch.setattr(cls, "eager", leaky)
    with pytest.raises(AssertionError):
        generic.test_shapes_and_weight_rows(generic.Case(plugin), "pad", False)


def test_the_new_type_in_toolkit_nn_and_recipe_models(plugin):
    from recipes.sentiment.model import RNNClassifier, TransformerClassifier
    from recipes.translation.model import Seq2SeqRNN, Seq2SeqTransformer

    torch.manual_seed(0)
    ids = torch.randint(2, 30, (3, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 6:] = False
    for cls, sizes in ((RNNClassifier, {"hidden_dim": 8}), (TransformerClassifier, {})):
        model = cls(30, 2, attention=plugin, embed_dim=16, num_heads=2, dropout=0.0, **sizes)
        logits, weights = model(ids, mask, need_weights=True)
        assert logits.shape == (3, 2) and weights.shape == (3, 9)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))
        assert (weights[1, 6:] == 0).all()
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).backward()
        temperatures = [p for n, p in model.named_parameters() if n.endswith("log_temperature")]
        assert temperatures and all(p.grad is not None and p.grad.abs() > 0 for p in temperatures)
        assert built_types(model)[plugin] == len(temperatures)
    # the encoder follows the type: one core per layer, plus the pooling
    assert built_types(model) == {plugin: 3, "multihead": 2}

    # a recurrent decoder feeds it the way its capabilities say (rnn_style="luong"), over
    # memory keys projected to the query width (it is not mixed_widths)
    rnn = Seq2SeqRNN(30, embed_dim=8, hidden_dim=6, decoder_dim=10, attention=plugin)
    assert rnn.decoder.step_module.style == "luong"
    assert rnn.decoder.step_module.attn.key_proj is not None
    logits, cross = rnn(ids, mask, ids[:, :5], need_weights=True)
    assert logits.shape == (3, 5, 30) and (cross[1, :, 6:] == 0).all()
    # a Transformer decoder's cross-attention follows it (it needs no positions)
    transformer = Seq2SeqTransformer(
        30, embed_dim=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1,
        attention=plugin,
    )  # fmt: skip
    assert transformer.cross_attention_type == plugin
    assert built_types(transformer) == {plugin: 3, "multihead": 3}
