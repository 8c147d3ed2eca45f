"""One registry mapping attention names to their builders and capabilities, and
``built_types``: which registered types a model really holds.

A type is registered where its class is defined, with what it can do::

    @register("local", Capabilities(needs_positions=True, pooling_query=False, ...))
    class LocalAttention(AttentionBase): ...

Code that must treat types differently asks the registry (``capabilities(name)``,
``types_with(...)``) instead of listing names, so a new type is one module in
``toolkit.attention`` (imported automatically by the package) and one
``conf/attention/<name>.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch.nn as nn

RNN_STYLES = ("bahdanau", "luong")


def _frozen(options: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


@dataclass(frozen=True)
class Capabilities:
    """What a registered attention type can do and how tests and benchmarks exercise it.

    Every type accepts the block interface of ``toolkit.attention.base`` (masks, ``causal``,
    ``dropout``, ``need_weights``); these fields say where it may be used beyond that.

    Where the type may be used:

    Attributes:
        self_attention: it can attend over a whole sequence in one parallel pass, so it can
            be the core of a multi-head layer (a Transformer's self- or cross-attention).
            False for the stateful types, whose step ``t`` needs the weights of step ``t-1``.
        cross_attention: it can score a query against the keys of another sequence (a
            Transformer's cross-attention, a recurrent decoder's query over a memory). False
            for the self-attention-only types (``rotary``, ``alibi``, ``relative``): they
            score a query and a key by their positions in one sequence.
        pooling_query: a learned query, which has no position, can attend with it
            (``toolkit.nn.AttentionPooling``). False for types that need the query's
            position and for the stateful ones.
        needs_positions: its scores depend on where the query sits among the keys (queries
            aligned to the end of the keys): ``local``'s window, the position terms of
            ``rotary``/``alibi``/``relative``. A model's cross-attention does not default to
            such a type (the builders use ``multihead`` unless told otherwise), and padding
            only the keys changes its outputs.
        stateful: it carries a state from one decoder step to the next (protocol:
            ``toolkit.attention.location_coverage``); only recurrent decoders use it.
        mixed_widths: query and key widths may differ (``query_dim != key_dim``); other
            cores get a memory's keys projected to the query width.
        fast_path: it has a fused/blockwise path that runs when weights are not requested.
        layer: it is a multi-head layer built as ``(embed_dim, num_heads, core=...)``
            around a per-head core (``multihead``), not a per-head core itself.
        single_query_form: a module class that computes this type for one decoder query
            over a memory of another length, used by ``toolkit.nn.MemoryAttention`` instead
            of the registered block (``local``: local-p, which predicts the window centre the
            query lacks). Built as ``form(query_dim, **options)`` over keys projected to
            ``query_dim``; called as ``form(query, key, value, mask) -> (output, weights)``.
        rnn_style: how a recurrent decoder feeds it by default: ``luong`` (the new state
            queries the memory; the multiplicative family of Luong et al. 2015) or
            ``bahdanau`` (the previous state queries; the context goes into the cell).

    How tests and benchmarks exercise it (options passed to the constructor):

    Attributes:
        test_options: small options for the block tests, so that every chunked or
            blockwise path runs at about ten steps.
        test_multihead_options: overrides of ``test_options`` when the type runs as the core
            of a ``multihead`` layer in those tests.
        test_model_options: options for tests that build layers, decoders and recipe models
            with the type (e.g. a window small enough to cut a dozen steps).
        test_gradcheck_length: sequence length of the float64 gradient checks.
        test_dropout_keeps_weights: the returned weights are those before dropout (so they
            do not change between train and eval); False when dropout acts elsewhere
            (``linear`` drops key features).
        benchmark_options: options of the type in ``benchmarks/attention.py``.
        benchmark_growth: exponent of time and memory in the sequence length (2 for
            quadratic attention, 1 for linear), for the benchmark's skip predictor.
    """

    self_attention: bool = True
    cross_attention: bool = True
    pooling_query: bool = True
    needs_positions: bool = False
    stateful: bool = False
    mixed_widths: bool = False
    fast_path: bool = True
    layer: bool = False
    single_query_form: Callable[..., nn.Module] | None = None
    rnn_style: str = "bahdanau"
    test_options: Mapping[str, Any] = field(default_factory=dict)
    test_multihead_options: Mapping[str, Any] = field(default_factory=dict)
    test_model_options: Mapping[str, Any] = field(default_factory=dict)
    test_gradcheck_length: int = 5
    test_dropout_keeps_weights: bool = True
    benchmark_options: Mapping[str, Any] = field(default_factory=dict)
    benchmark_growth: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "test_options", "test_multihead_options", "test_model_options", "benchmark_options"
        ):  # fmt: skip
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.rnn_style not in RNN_STYLES:
            raise ValueError(f"rnn_style must be one of {RNN_STYLES}, got {self.rnn_style!r}")
        if self.stateful and (self.self_attention or self.pooling_query):
            raise ValueError(
                "a stateful type attends one decoder step at a time: declare it with "
                "self_attention=False and pooling_query=False"
            )
        if self.needs_positions and self.pooling_query:
            raise ValueError(
                "a type that needs the query's position cannot pool with a learned query "
                "(which has none): declare it with pooling_query=False"
            )

    @property
    def multihead_core(self) -> bool:
        """Whether it can be the per-head core of a ``multihead`` layer."""
        return self.self_attention and not self.layer


CAPABILITY_NAMES = frozenset(
    [f.name for f in dataclasses.fields(Capabilities)] + ["multihead_core"]
)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_CAPABILITIES: dict[str, Capabilities] = {}


def register(
    name: str, capabilities: Capabilities | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make a block buildable as ``build(name, ...)``, with what it can do
    (``Capabilities``; the defaults describe a plain core usable everywhere)."""
    caps = Capabilities() if capabilities is None else capabilities
    if not isinstance(caps, Capabilities):
        raise TypeError(f"register({name!r}, ...): capabilities must be a Capabilities")

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention type {name!r} is already registered")
        _REGISTRY[name] = cls
        _CAPABILITIES[name] = caps
        cls.registry_name = name  # type: ignore[attr-defined]
        cls.capabilities = caps  # type: ignore[attr-defined]
        return cls

    return wrap


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (a type registered for a test or a notebook)."""
    get(name)
    del _REGISTRY[name], _CAPABILITIES[name]


def available() -> list[str]:
    """The registered attention names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown attention type {name!r}; valid choices: {', '.join(available())}"
        ) from None


def capabilities(name: str) -> Capabilities:
    """What the registered type ``name`` can do (unknown names list the valid ones)."""
    get(name)
    return _CAPABILITIES[name]


def types_with(**wanted: Any) -> list[str]:
    """The registered names (sorted) whose capabilities equal every ``wanted`` value, e.g.
    ``types_with(stateful=True)`` or ``types_with(multihead_core=True, fast_path=False)``."""
    unknown = sorted(set(wanted) - CAPABILITY_NAMES)
    if unknown:
        raise ValueError(
            f"unknown capabilities {unknown}; valid: {', '.join(sorted(CAPABILITY_NAMES))}"
        )
    return [
        name
        for name in available()
        if all(getattr(_CAPABILITIES[name], key) == value for key, value in wanted.items())
    ]


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the attention block registered as ``name`` with its keyword options."""
    builder = get(name)
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise TypeError(f"attention {name!r}: {err}") from err


def self_attention_only(name: str) -> bool:
    """Whether ``name`` cannot be a cross-attention (``capabilities(name).cross_attention``
    is False: ``rotary``, ``alibi``, ``relative``). Such a type means nothing for
    cross-attention over a memory, one RNN query over a memory or a learned pooling query,
    and those uses refuse it (or, in the model builders, fall back to ``multihead``
    cross-attention)."""
    return not capabilities(name).cross_attention


def stateful(name: str) -> bool:
    """Whether ``name`` carries an attention state from one decoder step to the next
    (``capabilities(name).stateful``: ``location``, ``coverage``; the protocol is described
    in ``toolkit.attention.location_coverage``). Such a type is one query step over a memory:
    recurrent decoders (``toolkit.nn.MemoryAttention``, ``AttentionRNNDecoderStep``) keep its
    state in their decoder state; a multi-head layer (Transformer self- or cross-attention,
    which computes every position in one parallel pass) and attention pooling refuse it."""
    return capabilities(name).stateful


def cross_attention_for(name: str) -> str:
    """The cross-attention type of a decoder whose self-attention is ``name``: ``name``
    itself, or standard ``multihead`` when ``name`` needs the query's position
    (``needs_positions``: a decoder step has none in the memory) or cannot cross-attend."""
    caps = capabilities(name)
    return "multihead" if caps.needs_positions or not caps.cross_attention else name


def position_reason(name: str) -> str | None:
    """Why ``name`` needs positions a query may lack, as a phrase naming the type, or
    ``None`` when it does not (error messages that refuse such a use quote it)."""
    caps = capabilities(name)
    if not caps.cross_attention:
        return (
            f"{name!r} is self-attention only (it scores a query and a key by their positions "
            "in one sequence)"
        )
    if caps.needs_positions:
        return (
            f"{name!r} scores the keys around the query's own position (e.g. a window "
            "centred on it)"
        )
    return None


def implemented_type(cls: type) -> str | None:
    """The registered attention type that instances of ``cls`` implement, or ``None``.

    A registered class implements its own name. Any other module class that computes a
    registered type's maths in another form (e.g. ``toolkit.nn.LocalPAttention``, the
    single-query form of ``local``) declares it in its body as
    ``attention_type = "<registered name>"``. The declaration is read from the class's own
    ``__dict__`` only: a subclass, which may change the maths, inherits neither that
    attribute nor the registered name (``registry_name``) here; it counts only when it is
    registered or declares ``attention_type`` itself.

    Raises:
        ValueError: the class declares a name that is not registered.
    """
    for name, registered in _REGISTRY.items():
        if registered is cls:
            return name
    declared = vars(cls).get("attention_type")
    if declared is None:
        return None
    if declared not in _REGISTRY:
        raise ValueError(
            f"{cls.__qualname__}.attention_type = {declared!r} is not a registered attention "
            f"type; valid choices: {', '.join(available())}"
        )
    return declared


def built_types(model: nn.Module) -> dict[str, int]:
    """How many modules of each registered attention type ``model`` holds: what a run really
    uses (``metrics.json`` -> ``attention_modules``).

    Every module found by ``model.modules()`` whose class ``implemented_type`` names counts
    once under that name: registered blocks and the classes that declare
    ``attention_type`` (``LocalPAttention`` counts as ``local``). A ``multihead`` layer
    counts once, and so does the core inside it (``multihead`` + ``scaled_dot`` for
    standard MHA, ``multihead`` + ``local`` for multi-head local attention). Wrappers that
    only hold such a module (``MemoryAttention``, ``AttentionPooling``) are not counted.
    """
    counts: dict[str, int] = {}
    names: dict[type, str | None] = {}
    for module in model.modules():
        cls = type(module)
        if cls not in names:
            names[cls] = implemented_type(cls)
        name = names[cls]
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
