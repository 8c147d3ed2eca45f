"""A checkpoint's data state reaches the datamodule as saved: through Hydra's keyword
arguments it would become an OmegaConf node, where the token ``???`` is a missing value."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from toolkit.training.checkpoints import build_datamodule

STATE = {"vocab": {"tokens": ["<pad>", "<unk>", "???", "${oops}", "good"]}, "labels": ["n", "p"]}


def test_the_saved_state_is_passed_as_it_is():
    cfg = OmegaConf.create({"_target_": "types.SimpleNamespace", "batch_size": 8})
    dm = build_datamodule(cfg, STATE)
    assert dm.batch_size == 8
    assert dm.state == STATE and list(dm.state["vocab"]["tokens"]) == STATE["vocab"]["tokens"]
    assert build_datamodule(cfg).state is None
    # the keyword route the toolkit used before loses the "???" token
    plain = instantiate(cfg, state={"vocab": {"tokens": ["<pad>", "???"]}}, _recursive_=False)
    with pytest.raises(MissingMandatoryValue):
        list(plain.state["vocab"]["tokens"])
