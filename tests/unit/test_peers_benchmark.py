"""benchmarks/peers.py: each pair builds at tiny sizes with the parameter counts the script
states, computes the same function as its peer, and one training step runs (no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers  # noqa: E402

TINY = peers.QUICK_SIZES


def _cases(pair: str) -> list[str]:
    return [n for n, spec in peers.SPECS.items() if spec.pair == pair]


@pytest.mark.parametrize("pair", peers.PAIRS)
def test_pair_parameter_counts_match_the_stated_difference_and_a_step_runs(pair):
    names = [n for n in _cases(pair) if peers.available(n)]
    ours = next(n for n in names if peers.SPECS[n].side == "ours")
    built = {n: peers.build(n, TINY) for n in names}
    ours_params = peers.param_count(built[ours].module)
    assert ours_params > 0
    for name, work in built.items():
        spec = peers.SPECS[name]
        if spec.side == "peer" and spec.params_delta is not None:
            assert peers.param_count(work.module) - ours_params == spec.params_delta(TINY), name
        seconds = work.step()
        assert seconds > 0
        assert all(p.grad is None for p in work.module.parameters())  # dropped after the step
        assert work.module.training


def test_the_full_sizes_have_equal_parameters_for_the_equal_pairs():
    """The sizes the full run uses: ours and torchaudio / torch.nn.Transformer agree."""
    full = peers.Sizes()
    counts = {}
    for name in ("ours_conformer", "torchaudio_conformer", "ours_transformer",
                 "torch_transformer"):  # fmt: skip
        module = peers.build(name, full).module
        counts[name] = peers.param_count(module)
    assert counts["ours_conformer"] == counts["torchaudio_conformer"] == 1_942_848
    assert counts["ours_transformer"] == counts["torch_transformer"] == 5_530_624


@pytest.mark.parametrize("pair", ["conformer", "transformer", "seq2seq"])
def test_peer_weights_in_our_module_give_the_same_loss_and_gradients(pair):
    diffs = peers.check_equal(pair)
    assert diffs, "the torch/torchaudio peer is always importable"
    for name, diff in diffs.items():
        if "skip" in diff:
            continue
        assert diff["loss_diff"] < 1e-5, name
        assert diff["grad_diff"] < 1e-4, name


def test_a_pair_without_an_installed_peer_is_reported_not_measured(tmp_path, monkeypatch):
    present = peers.available
    monkeypatch.setattr(peers, "available", lambda n: n != "xtransformers_encoder" and present(n))
    args = peers.parse_args(["--quick", "--pairs", "encoder", "--out", str(tmp_path)])
    rows = peers.run(args, TINY, peers.QUICK, ctx=None)  # no process is started
    assert rows["xtransformers_encoder"]["status"] == "not installed"
    assert rows["ours_encoder"]["status"] == "no peer installed"
    assert "not measured" in peers.verdicts(rows)[0]


def test_outputs_from_rows(tmp_path):
    rows = {
        "ours_conformer": {"pair": "conformer", "case": "ours_conformer", "side": "ours",
                           "package": "toolkit", "version": "0.1.0", "params": 10,
                           "ms_median": 105.0, "ms_q1": 100.0, "ms_q3": 110.0, "runs": 15,
                           "peak_mib": 50.0, "status": "measured"},
        "torchaudio_conformer": {"pair": "conformer", "case": "torchaudio_conformer",
                                 "side": "peer", "package": "torchaudio", "version": "2.11",
                                 "params": 10, "params_delta": 0, "ms_median": 100.0,
                                 "ms_q1": 95.0, "ms_q3": 105.0, "runs": 15, "peak_mib": 40.0,
                                 "time_ratio": 1.05, "mem_ratio": 1.25,
                                 "same_function": "loss 1e-07, grads 1e-07",
                                 "status": "measured"},
        "speechbrain_conformer": {"pair": "conformer", "case": "speechbrain_conformer",
                                  "side": "peer", "package": "speechbrain", "version": "",
                                  "status": "not installed"},
    }  # fmt: skip
    (line,) = peers.verdicts(rows)
    assert "**1.05×**" in line and "**met**" in line and "equal parameters" in line
    table = peers.table_md(rows)
    assert "| not installed |" in table and "1.05" in table
    peers.write_csv(tmp_path / "peers.csv", rows)
    header, *body = (tmp_path / "peers.csv").read_text().splitlines()
    assert header.split(",") == peers.COLUMNS and len(body) == 3
    peers.plot(tmp_path / "peers.png", rows)
    assert (tmp_path / "peers.png").stat().st_size > 0
