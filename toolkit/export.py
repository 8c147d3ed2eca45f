"""Export a checkpoint's inference path: ``python -m toolkit.export ckpt=PATH
format=torchscript|onnx`` writes into ``hydra.run.dir``:

* sentiment: ``classifier.{pt,onnx}`` — ``(ids (B,T) int64, mask (B,T) bool) -> logits (B,C)``;
* translation: ``decoder_step.{pt,onnx}`` — ``(src (B,S) int64, src_mask (B,S) bool,
  prefix (B,P) int64) -> log_probs (B,V)`` of the next token; greedy decoding is the loop in
  :func:`greedy_decode` around it (BOS, EOS, the length limit are in ``export.json``);
* ``export.json`` (format, inputs/outputs, labels or special ids, max length, parity) and
  ``data_state.pt`` (vocabulary / sentencepiece model for pre- and post-processing).

Graphs are traced (``torch.jit.trace``; ONNX through the TorchScript exporter) on the
fused attention path, with dynamic batch and length axes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import Tensor, nn

from toolkit.cli import run_with_key_help
from toolkit.evaluate import load_module
from toolkit.runs import atomic_file, write_text_atomic
from toolkit.train import CONF_DIR

FORMATS = ("torchscript", "onnx", "safetensors")


class Classifier(nn.Module):
    """Sentiment inference graph: token ids + mask -> class logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        logits, _ = self.model(ids, mask, need_weights=False)
        return logits.float()


class DecoderStep(nn.Module):
    """Translation step graph: source + target prefix -> next-token log-probabilities.

    Re-encodes the source and re-runs the decoder over the whole prefix every step (no
    cache tensors to carry between calls): simple to export for any seq2seq model of the
    recipe, quadratic in the output length.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_mask: Tensor, prefix: Tensor) -> Tensor:
        logits, _ = self.model(src, src_mask, prefix)
        return logits[:, -1].float().log_softmax(-1)  # (B, V)


def greedy_decode(
    step: Callable[[Tensor, Tensor, Tensor], Tensor], src: Tensor, src_mask: Tensor,
    bos_id: int, eos_id: int, max_len: int,
) -> tuple[list[int], list[Tensor]]:  # fmt: skip
    """Greedy decoding of ONE sentence (batch 1) with an exported step graph.

    Returns the tokens (EOS excluded) and the log-probabilities of every step.
    """
    prefix = torch.tensor([[bos_id]], dtype=torch.long)
    tokens: list[int] = []
    steps: list[Tensor] = []
    for _ in range(max_len):
        log_probs = step(src, src_mask, prefix)
        steps.append(log_probs[0])
        token = int(log_probs[0].argmax())
        if token == eos_id:
            break
        tokens.append(token)
        prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)
    return tokens, steps


def max_decode_len(module, n_src: int) -> int:
    """The eager decoder's length limit for a source of ``n_src`` subwords (EOS included):
    ``ratio * n_src + offset``, at most the module's ``max_source_len()``."""
    d = module.decode_cfg()
    limit = int(n_src * float(d["max_len_ratio"])) + int(d["max_len_offset"])
    return min(limit, module.max_source_len())


def example_inputs(module, n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the recipe's graph (padding in the second row)."""
    gen = torch.Generator().manual_seed(seed)
    kind = graph_kind(module)
    if kind == "classifier":
        vocab = len(module.data_state["vocab"]["tokens"])
        ids = torch.randint(1, vocab, (n, length), generator=gen)
        mask = torch.ones(n, length, dtype=torch.bool)
        mask[1:, length - 2 :] = False
        return ids.masked_fill(~mask, 0), mask
    tok = module.tokenizer
    src = torch.randint(4, len(tok), (n, length), generator=gen)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[1:, length - 2 :] = False
    src = src.masked_fill(~mask, tok.pad_id)
    prefix = torch.randint(4, len(tok), (n, 3), generator=gen)
    prefix[:, 0] = tok.bos_id
    return src, mask, prefix


def graph_kind(module) -> str:
    name = module.cfg.recipe.name
    if name == "sentiment":
        return "classifier"
    if name == "translation":
        return "decoder_step"
    raise NotImplementedError(f"export of the {name!r} recipe is not implemented")


def build_graph(module) -> tuple[nn.Module, str, list[str], list[str], dict[str, dict]]:
    kind = graph_kind(module)
    if kind == "classifier":
        axes = {"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"}}  # fmt: skip
        return Classifier(module.model).eval(), kind, ["ids", "mask"], ["logits"], axes
    axes = {"src": {0: "batch", 1: "src_len"}, "src_mask": {0: "batch", 1: "src_len"},
            "prefix": {0: "batch", 1: "prefix_len"}, "log_probs": {0: "batch"}}  # fmt: skip
    graph = DecoderStep(module.model).eval()
    return graph, kind, ["src", "src_mask", "prefix"], ["log_probs"], axes


def load_runner(path: str | Path) -> Callable[..., Tensor]:
    """A callable ``(*inputs: Tensor) -> Tensor`` for an exported file (.pt or .onnx)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*inputs: Tensor) -> Tensor:
            feeds = {n: x.numpy() for n, x in zip(names, inputs, strict=True)}
            return torch.from_numpy(session.run(None, feeds)[0])

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

    from toolkit.lightning import SAFETENSORS_WEIGHTS

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
    graph, kind, inputs, outputs, axes = build_graph(module)
    example = example_inputs(module)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}.{'pt' if fmt == 'torchscript' else 'onnx'}"
    if fmt == "torchscript":
        traced = torch.jit.trace(graph, example, check_trace=False)
        torch.jit.save(traced, str(path))
    else:
        torch.onnx.export(
            graph, example, str(path), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    torch.save(module.data_state, out_dir / "data_state.pt")
    info: dict[str, Any] = {
        "recipe": module.cfg.recipe.name,
        "attention": module.cfg.attention.name,
        "format": fmt,
        "graph": path.name,
        "inputs": inputs,
        "outputs": outputs,
    }
    if kind == "classifier":
        info["labels"] = list(module.label_map.labels)
        info["max_len"] = int(module.data_state.get("max_len", 64))
    else:
        tok = module.tokenizer
        info.update(bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                    decode=module.decode_cfg())  # fmt: skip
    if check_inputs:
        run = load_runner(path)
        worst = 0.0
        for seed in range(check_inputs):
            args = example_inputs(module, n=2, length=3 + seed % 9, seed=seed)
            worst = max(worst, float((run(*args) - graph(*args)).abs().max()))
        info["parity_random_inputs"] = {"n": check_inputs, "max_abs_diff": worst}
    write_text_atomic(out_dir / "export.json", json.dumps(info, indent=2) + "\n")
    return info


@hydra.main(config_path=CONF_DIR, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    module = load_module(cfg.ckpt)
    info = export(module, str(cfg.format), run_dir, int(cfg.opset), int(cfg.check_inputs))
    print(f"[toolkit.export] {run_dir / info['graph']}: {info.get('parity_random_inputs')}")


if __name__ == "__main__":
    run_with_key_help(main, CONF_DIR, "export")
