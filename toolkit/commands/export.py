"""Export a checkpoint's inference path: ``python -m toolkit.export ckpt=PATH
format=torchscript|onnx`` writes into ``hydra.run.dir``:

* ``<graph>.{pt,onnx}``: the graph the recipe's ``export`` hook builds
  (``export_graph(module)``, see ``toolkit/recipe_hooks.py``), e.g. a text classifier,
  a decoder step, a speech encoder with its CTC head. Search loops (greedy, beam) are not
  part of a graph: :func:`greedy_decode` runs a step graph, the recipe's README says what
  runs outside;
* ``export.json`` (format, inputs/outputs, the recipe's metadata: labels, special ids, max
  length, sample rate; and the parity measured on random inputs) and ``data_state.pt``
  (vocabulary / tokenizer for pre- and post-processing).

Graphs are traced (``torch.jit.trace``; ONNX through the TorchScript exporter) on the
fused attention path, with dynamic batch and length axes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import Tensor, nn

from toolkit.commands.overrides import run_with_key_help
from toolkit.paths import CONF_DIR
from toolkit.recipe_hooks import call_hook
from toolkit.runs import atomic_file, write_text_atomic
from toolkit.training.checkpoints import load_module

FORMATS = ("torchscript", "onnx", "safetensors")


@dataclass
class ExportGraph:
    """What a recipe's ``export_graph(module)`` hook returns.

    Args:
        graph: the module to trace (eval mode), ``forward(*inputs) -> output(s)``.
        name: the file stem (``classifier``, ``decoder_step`` ...).
        inputs, outputs: names, in order (ONNX input/output names, export.json).
        dynamic_axes: ONNX dynamic axes per name.
        example: ``example(n, length, seed) -> tuple of input tensors``: random inputs
            with padding in the second row, for tracing and the parity check.
        metadata: recipe facts for export.json (labels, special ids, decoding settings).
    """

    graph: nn.Module
    name: str
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    example: Callable[[int, int, int], tuple[Tensor, ...]]
    metadata: dict[str, Any] = field(default_factory=dict)


def greedy_decode_inputs(
    step: Callable[..., Any], inputs: tuple[Tensor, ...], bos_id: int, eos_id: int, max_len: int
) -> tuple[list[int], list[Tensor]]:
    """Greedy decoding of ONE example (batch 1) with an exported step graph
    ``step(*inputs, prefix) -> log_probs (1, V)`` (or a tuple whose first item it is).

    Returns the tokens (EOS excluded) and the log-probabilities of every step.
    """
    prefix = torch.tensor([[bos_id]], dtype=torch.long)
    tokens: list[int] = []
    steps: list[Tensor] = []
    for _ in range(max_len):
        out = step(*inputs, prefix)
        log_probs = out[0] if isinstance(out, (tuple, list)) else out
        steps.append(log_probs[0])
        token = int(log_probs[0].argmax())
        if token == eos_id:
            break
        tokens.append(token)
        prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)
    return tokens, steps


def greedy_decode(
    step: Callable[[Tensor, Tensor, Tensor], Tensor], src: Tensor, src_mask: Tensor,
    bos_id: int, eos_id: int, max_len: int,
) -> tuple[list[int], list[Tensor]]:  # fmt: skip
    """Greedy decoding of ONE sentence (batch 1) with a ``(src, src_mask, prefix)`` step
    graph; see :func:`greedy_decode_inputs`."""
    return greedy_decode_inputs(step, (src, src_mask), bos_id, eos_id, max_len)


def max_decode_len(module, n_src: int) -> int:
    """The eager decoder's length limit for an input of ``n_src`` tokens (the recipe's
    ``max_decode_len`` export hook)."""
    return int(call_hook(module, "export", "max_decode_len", n_src))


def build_export_graph(module) -> ExportGraph:
    """The recipe's :class:`ExportGraph` (its ``export_graph`` hook), graph in eval mode."""
    spec = call_hook(module, "export", "export_graph")
    spec.graph.eval()
    return spec


def example_inputs(module, n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the recipe's graph (padding in the second row)."""
    return build_export_graph(module).example(n, length, seed)


def graph_kind(module) -> str:
    """The recipe's graph name (the exported file's stem)."""
    return build_export_graph(module).name


def build_graph(module) -> tuple[nn.Module, str, list[str], list[str], dict[str, dict]]:
    spec = build_export_graph(module)
    return spec.graph, spec.name, spec.inputs, spec.outputs, spec.dynamic_axes


def _as_tuple(out: Any) -> tuple[Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference over every output (equal infinities count as 0)."""
    worst = 0.0
    for x, y in zip(_as_tuple(a), _as_tuple(b), strict=True):
        x, y = x.double(), y.double()
        same = (x == y) | (x.isnan() & y.isnan())
        diff = (x - y).abs().masked_fill(same, 0.0)
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst


def load_runner(path: str | Path) -> Callable[..., Tensor]:
    """A callable ``(*inputs: Tensor) -> Tensor`` (a tuple for a graph with several
    outputs) for an exported file (.pt or .onnx)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
            feeds = {n: x.numpy() for n, x in zip(names, inputs, strict=True)}
            outs = [torch.from_numpy(o) for o in session.run(None, feeds)]
            return outs[0] if len(outs) == 1 else tuple(outs)

        return run_onnx
    scripted = torch.jit.load(str(path), map_location="cpu")

    @torch.no_grad()
    def run_ts(*inputs: Tensor) -> Tensor:
        return scripted(*inputs)

    return run_ts


def export_weights(module, out_dir: Path) -> dict:
    """Any recipe's model without pickle: ``model.safetensors`` (weights), ``config.yaml``
    (the resolved run config) and ``data_state.json`` (vocabulary, labels, tokenizer), which
    ``init_from=``, ``toolkit.evaluate``/``predict``/``export`` accept as ``ckpt=<folder>``."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from toolkit.training.checkpoints import SAFETENSORS_WEIGHTS

    # clone: safetensors stores no shared storage (tied embeddings are saved twice)
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_file(out_dir / SAFETENSORS_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "attention-toolkit",
                                             "recipe": str(module.cfg.recipe.name)})  # fmt: skip
    cfg = OmegaConf.create(module.hparams["cfg"])
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    data_state = json.dumps(module.data_state, indent=1, ensure_ascii=False)
    write_text_atomic(out_dir / "data_state.json", data_state + "\n")
    info = {
        "recipe": module.cfg.recipe.name,
        "attention": module.cfg.attention.name,
        "format": "safetensors",
        "graph": SAFETENSORS_WEIGHTS,
        "files": [SAFETENSORS_WEIGHTS, "config.yaml", "data_state.json"],
        "tensors": len(state),
        "parameters": int(sum(v.numel() for v in state.values())),
    }
    write_text_atomic(out_dir / "export.json", json.dumps(info, indent=2) + "\n")
    return info


@torch.no_grad()
def export(module, fmt: str, out_dir: Path, opset: int = 17, check_inputs: int = 20) -> dict:
    """Export ``module``'s inference graph as ``fmt`` into ``out_dir``; returns the
    export.json object (with the measured parity on random inputs)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    if fmt == "safetensors":
        return export_weights(module, out_dir)
    module.eval()
    spec = build_export_graph(module)
    graph = spec.graph
    example = spec.example(2, 7, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.{'pt' if fmt == 'torchscript' else 'onnx'}"
    if fmt == "torchscript":
        traced = torch.jit.trace(graph, example, check_trace=False)
        torch.jit.save(traced, str(path))
    else:
        torch.onnx.export(
            graph, example, str(path), input_names=spec.inputs, output_names=spec.outputs,
            dynamic_axes=spec.dynamic_axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    torch.save(module.data_state, out_dir / "data_state.pt")
    info: dict[str, Any] = {
        "recipe": module.cfg.recipe.name,
        "attention": module.cfg.attention.name,
        "format": fmt,
        "graph": path.name,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        **spec.metadata,
    }
    if check_inputs:
        run = load_runner(path)
        worst = 0.0
        for seed in range(check_inputs):
            args = spec.example(2, 3 + seed % 9, seed)
            worst = max(worst, max_abs_diff(run(*args), graph(*args)))
        info["parity_random_inputs"] = {"n": check_inputs, "max_abs_diff": worst}
    write_text_atomic(out_dir / "export.json", json.dumps(info, indent=2) + "\n")
    return info


@hydra.main(config_path=CONF_DIR, config_name="export", version_base="1.3")
def command(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    module = load_module(cfg.ckpt)
    info = export(module, str(cfg.format), run_dir, int(cfg.opset), int(cfg.check_inputs))
    print(f"[toolkit.export] {run_dir / info['graph']}: {info.get('parity_random_inputs')}")


def main() -> None:
    """``python -m toolkit.export key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "export")
