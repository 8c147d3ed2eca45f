"""No run records an attention type it did not use.

A training run records ``attention`` (the configured type) and, in ``metrics.json``,
``attention_modules = built_types(module)``. For every recipe x every model config it offers
(``conf/model/<recipe>/*.yaml``) x every registered type, the LightningModule is built as
``toolkit.train.train`` builds it (composed config, recipe module, a data state faked with
the real tokenizer/vocabulary classes; no corpus, no training) and either

* construction is refused at start-up with an error naming the model and the type (only the
  combinations in ``REFUSED``, which the code refuses on purpose), or
* the configured type is among ``built_types`` and every attention module the model holds is
  of a type the configuration asked for: the configured type (``multihead``: with its core),
  a ``multihead`` layer whose core is such a type (every registered name becomes a multi-head
  layer, ``toolkit.nn.attention_layer``), or a part listed in ``FIXED`` that the model
  documents as not following ``attention``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch.nn as nn
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from toolkit.attention import (
    AttentionBase,
    available,
    build,
    built_types,
    capabilities,
    cross_attention_for,
    get,
    implemented_type,
    types_with,
)
from toolkit.nn.memory_attention import LocalPAttention
from toolkit.paths import CONF_DIR
from toolkit.runs import import_object

MODELS_DIR = Path(CONF_DIR) / "model"
RECIPES = sorted(p.stem for p in (Path(CONF_DIR) / "recipe").glob("*.yaml"))


def model_names(recipe: str) -> list[str]:
    """The models a recipe offers (``model=<name>``: conf/model/<recipe>/<name>.yaml)."""
    return sorted(p.stem for p in (MODELS_DIR / recipe).glob("*.yaml"))


CASES = [(r, m, a) for r in RECIPES for m in model_names(r) for a in available()]
# What decides which combinations build comes from the registry (each type's capabilities):
# rotary, alibi, relative: positions of query and key in one sequence (self-attention only)
SELF_ONLY = types_with(cross_attention=False)
# location, coverage: a state carried from one decoder step to the next (recurrent decoders)
STATEFUL = types_with(stateful=True)
# local and the self-attention-only types: a learned pooling query has no position for them
NO_POOLING_QUERY = types_with(pooling_query=False, stateful=False)
# the decoder's cross-attention does not follow these (local, rotary, ...): multihead instead
CROSS_FALLBACK = [a for a in types_with(self_attention=True) if cross_attention_for(a) != a]
# multi-head cores with weights of their own (additive, general, relative), which the
# pretrained MiniLM does not hold
OWN_WEIGHTS = [
    a
    for a in types_with(multihead_core=True)
    if any(True for _ in build(a, query_dim=8, key_dim=8).parameters())
]
SENTIMENT_CLASSES = {"bigru": "RNNClassifier", "transformer": "TransformerClassifier",
                     "minilm": "MiniLMClassifier"}  # fmt: skip

# Combinations refused on purpose at start-up: message pattern (it names model and type).
REFUSED = {
    # the pretrained MiniLM holds no weights for a core with parameters of its own
    **{("sentiment", "minilm", a): rf"MiniLMClassifier: MiniLM with attention={a}"
       for a in OWN_WEIGHTS},
    # the BiGRU's only attention is its pooling, and a learned query has no position
    **{("sentiment", "bigru", a): rf"attention={a} with RNNClassifier" for a in NO_POOLING_QUERY},
    # self-attention-only types in a model whose attention is a query over a memory
    # (no position shared with the keys)
    **{("translation", "rnn", a): rf"Seq2SeqRNN: attention={a}" for a in SELF_ONLY},
    **{("captioning", "lstm", a): rf"ShowAttendTell: attention={a}" for a in SELF_ONLY},
    # stateful types wherever there is no recurrent decoder: classifiers (no decoder steps),
    # Transformers (every position in one parallel pass: translation/captioning transformer,
    # the ASR encoder and Transformer decoder); they build in translation rnn, captioning lstm
    **{
        ("sentiment", m, a): rf"attention={a} with {cls}: {a} is stateful"
        for m, cls in SENTIMENT_CLASSES.items()
        for a in STATEFUL
    },
    **{("translation", "transformer", a): rf"Seq2SeqTransformer: attention={a} is stateful"
       for a in STATEFUL},
    **{("captioning", "transformer", a): rf"CaptionTransformer: attention={a} is stateful"
       for a in STATEFUL},
    **{("asr", m, a): rf"CTCAttentionASR: attention={a} is stateful"
       for m in ("conformer", "transformer") for a in STATEFUL},
}  # fmt: skip

# Parts a model documents as not following `attention` (docstring and README / config):
# (recipe, model, attention or "*") -> [(module path pattern, the types that part holds)].
# An entry for the attention type replaces the model's "*" entry.
STANDARD_MHA = {"multihead", "scaled_dot"}
FIXED: dict[tuple[str, str, str], list[tuple[str, set[str]]]] = {
    # CTCAttentionASR / recipes/asr/README.md: the decoder's self- and cross-attention are
    # model.decoder_attention (multihead in both configs; checked below), not `attention`
    ("asr", "conformer", "*"): [(r"model\.decoder\.", STANDARD_MHA)],
    ("asr", "transformer", "*"): [(r"model\.decoder\.", STANDARD_MHA)],
    # CaptionTransformer / recipes/captioning/README.md: the causal self-attention is always
    # multihead; only the cross-attention over the regions follows `attention`
    ("captioning", "transformer", "*"): [
        (r"model\.decoder\.layers\.\d+\.self_attn\b", STANDARD_MHA)
    ],
}
for _a in CROSS_FALLBACK:
    # Seq2SeqTransformer / recipes/translation/README.md / transformer.yaml: `local` keeps
    # multihead cross-attention (a band over the source means nothing), and so do the
    # self-attention-only types
    FIXED[("translation", "transformer", _a)] = [
        (r"model\.decoder\.layers\.\d+\.cross_attn\b", STANDARD_MHA)
    ]
for _a in NO_POOLING_QUERY:
    # TransformerClassifier / recipes/sentiment/README.md: a learned pooling query has no
    # position (for a window, for rotary...), so the pooling is scaled_dot; the encoder
    # follows the type
    FIXED[("sentiment", "transformer", _a)] = [(r"model\.pool\b", {"scaled_dot"})]
for _a in SELF_ONLY:
    # CaptionTransformer: the type is the causal self-attention; cross-attention multihead
    FIXED[("captioning", "transformer", _a)] = [
        (r"model\.decoder\.layers\.\d+\.cross_attn\b", STANDARD_MHA)
    ]


@pytest.fixture(scope="module")
def compose_train():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield lambda *overrides: compose(config_name="train", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def data_states() -> dict[str, dict[str, Any]]:
    """What each datamodule's ``state()`` gives the module, built with the real classes."""
    from recipes.asr.data import CharTokenizer
    from recipes.captioning.data import CaptionVocab
    from toolkit.data.labelled import LabelMap
    from toolkit.data.subword import SubwordTokenizer, train_sentencepiece

    sentences = [f"the cat number {i} sat on the mat {7 * i}" for i in range(40)]
    pieces = SubwordTokenizer(train_sentencepiece(sentences, vocab_size=40))
    return {
        "asr": CharTokenizer.build(sentences).to_state(),
        "captioning": {"vocab": CaptionVocab.build([s.split() for s in sentences]).itos},
        "sentiment": {
            "vocab": {"tokens": ["<pad>", "<unk>", "good", "bad", "film"], "cls": False},
            "labels": LabelMap(["negative", "positive"]).to_dict(),
        },
        "translation": {"subword": pieces.state(), "target_lang": "de"},
    }


def build_module(cfg, state: dict[str, Any]) -> nn.Module:
    """The recipe's LightningModule, as ``toolkit.train.train`` constructs it."""
    module_cls = import_object(cfg.recipe.module)
    return module_cls(cfg=OmegaConf.to_container(cfg, resolve=True), data_state=state)


def asked_types(name: str, options: dict[str, Any] | None) -> set[str]:
    """The types an attention choice asks for: the name, and a multihead's core."""
    if name == "multihead":
        return {name, (options or {}).get("core", "scaled_dot")}
    return {name}


def attention_like(module: nn.Module) -> bool:
    """Whether ``module`` computes attention of some type (an attention block or a class
    derived from one), so ``built_types`` must see it."""
    registered = {get(name) for name in available()}
    return isinstance(module, AttentionBase) or any(
        cls in registered or "attention_type" in vars(cls) for cls in type(module).__mro__
    )


def check_recorded(module: nn.Module, configured: str, asked: set[str], fixed) -> None:
    built = built_types(module)
    assert configured in built, f"records {configured!r}, holds {built}"
    followed: set[str] = set()
    allowed = set(asked)
    for path, sub in module.named_modules():
        kind = implemented_type(type(sub))
        if kind is None:
            assert not attention_like(sub), f"{path} ({type(sub).__name__}) is not counted"
            continue
        part = next((types for pattern, types in fixed if re.match(pattern, path)), None)
        if part is not None:
            assert kind in part, f"{path}: {kind} in a part documented to hold {part}"
            allowed |= part
            continue
        core = implemented_type(type(sub.core)) if kind == "multihead" else None
        assert kind in asked or core in asked, (
            f"{path} ({type(sub).__name__}) is {kind!r}; the configuration asked for {asked}"
        )
        followed |= {kind, core} - {None}
        allowed.add(kind)
    assert configured in followed, f"{configured!r} only in documented fixed parts: {built}"
    assert set(built) <= allowed, (built, allowed)


@pytest.mark.parametrize(("recipe", "model", "attention"), CASES)
def test_built_types_hold_the_recorded_attention(
    recipe, model, attention, compose_train, data_states
):
    cfg = compose_train(f"recipe={recipe}", f"model={model}", f"attention={attention}")
    assert cfg.recipe.name == recipe and cfg.attention.name == attention
    refused = REFUSED.get((recipe, model, attention))
    if refused is not None:
        with pytest.raises(ValueError, match=refused):
            build_module(cfg, data_states[recipe])
        return
    if recipe == "asr":
        assert cfg.model.decoder_attention == "multihead"  # what FIXED says for asr
    fixed = FIXED.get((recipe, model, attention), FIXED.get((recipe, model, "*"), []))
    options = OmegaConf.to_container(cfg.attention.options) if cfg.attention.options else {}
    module = build_module(cfg, data_states[recipe])
    check_recorded(module, attention, asked_types(attention, options), fixed)


def test_every_recipe_offers_its_models():
    assert RECIPES == ["asr", "captioning", "sentiment", "translation"]
    for recipe in RECIPES:
        assert len(model_names(recipe)) >= 2, recipe
    assert ("translation", "rnn", "local") in CASES and ("captioning", "lstm", "local") in CASES
    # the stateful types build in the recurrent decoders (and nowhere else)
    for a in STATEFUL:
        built = {(r, m) for r, m, x in CASES if x == a and (r, m, x) not in REFUSED}
        assert built == {("translation", "rnn"), ("captioning", "lstm")}, (a, built)
    assert set(STATEFUL) >= {"location", "coverage"}
    # what the lists above are derived from, for the types the recipes' READMEs name
    assert set(SELF_ONLY) >= {"rotary", "alibi", "relative"}
    assert set(NO_POOLING_QUERY) >= {"local", *SELF_ONLY}
    assert set(CROSS_FALLBACK) >= {"local", *SELF_ONLY}
    assert set(OWN_WEIGHTS) >= {"additive", "general", "relative"}
    assert not set(OWN_WEIGHTS) & {"scaled_dot", "local", "linear", "rotary", "alibi"}


# Settings that change which modules follow `attention` (not in the model configs' defaults).
SETTINGS = [
    # Show-Attend-Tell ablation: the mean over regions is the `uniform` type
    ("captioning", "lstm", ["model.attend=mean"], {"uniform"}, r"ShowAttendTell.*attend=mean"),
    # MiniLM with its encoder pinned: mean pooling leaves no module of the run's type
    ("sentiment", "minilm", ["model.self_attention=multihead"], {"multihead"}, "MiniLM"),
    # ... attention pooling does use it, except `local` (no position for the pooling query)
    (
        "sentiment",
        "minilm",
        ["model.self_attention=multihead", "model.pooling=attention"],
        {a for a in available() if capabilities(a).pooling_query},
        r"attention=local with MiniLMClassifier",
    ),
]


@pytest.mark.parametrize("attention", ["additive", "local", "multihead", "uniform"])
@pytest.mark.parametrize(("recipe", "model", "extra", "accepted", "refusal"), SETTINGS)
def test_settings_that_pin_attention(
    recipe, model, extra, accepted, refusal, attention, compose_train, data_states
):
    cfg = compose_train(f"recipe={recipe}", f"model={model}", f"attention={attention}", *extra)
    if attention not in accepted:
        with pytest.raises(ValueError, match=refusal) as err:
            build_module(cfg, data_states[recipe])
        assert attention in str(err.value)
        return
    fixed = []
    if cfg.model.get("self_attention") not in (None, attention):  # the type named there
        fixed = [(r"model\.encoder\.", asked_types(cfg.model.self_attention, {}))]
    options = OmegaConf.to_container(cfg.attention.options) if cfg.attention.options else {}
    module = build_module(cfg, data_states[recipe])
    check_recorded(module, attention, asked_types(attention, options), fixed)


def test_experiment_minilm_records_the_attention_it_uses(compose_train, data_states):
    cfg = compose_train("recipe=sentiment", "experiment=sentiment_minilm")
    assert cfg.attention.name == "multihead" and cfg.model.self_attention is None
    module = build_module(cfg, data_states["sentiment"])
    assert built_types(module) == {"multihead": 6, "scaled_dot": 6}
    cfg = compose_train("recipe=sentiment", "experiment=sentiment_minilm", "attention=linear")
    assert built_types(build_module(cfg, data_states["sentiment"])) == {"linear": 6, "multihead": 6}


# ----------------------------------------------------------------------------- built_types


def test_built_types_counts_declared_implementations_only():
    class Holder(nn.Module):
        def __init__(self, *blocks: nn.Module) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(blocks)

    class ChangedLocalP(LocalPAttention):  # other maths: inherits no type
        pass

    class DeclaredLocalP(LocalPAttention):
        attention_type = "local"

    class AdditiveVariant(get("additive")):  # subclass of a registered class
        pass

    assert implemented_type(get("additive")) == "additive"
    assert implemented_type(LocalPAttention) == "local"
    assert implemented_type(ChangedLocalP) is None
    assert implemented_type(AdditiveVariant) is None
    model = Holder(
        LocalPAttention(8), ChangedLocalP(8), DeclaredLocalP(8), AdditiveVariant(query_dim=8)
    )
    assert built_types(model) == {"local": 2}

    class Misnamed(nn.Module):
        attention_type = "nope"

    with pytest.raises(ValueError, match="Misnamed.attention_type = 'nope'.*valid choices"):
        built_types(Holder(Misnamed()))
