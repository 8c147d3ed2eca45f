"""The commands, one module each, behind the entry points ``python -m toolkit.<command>``:

* :mod:`toolkit.commands.train`: train, validate and test a recipe;
* :mod:`toolkit.commands.evaluate`: re-score a checkpoint;
* :mod:`toolkit.commands.predict`: predictions and attention maps for raw inputs;
* :mod:`toolkit.commands.export`: a checkpoint as ONNX, TorchScript or safetensors;
* :mod:`toolkit.commands.compare`: a grid of runs across recipes, then the report;
* :mod:`toolkit.commands.report`: the report of any run folders (:mod:`toolkit.report`);
* :mod:`toolkit.commands.interpret`: erasure and rollout of a checkpoint
  (:mod:`toolkit.interpret`);
* :mod:`toolkit.commands.data`: dataset validation and corpus checks (:mod:`toolkit.data`).

Every command takes ``key=value`` overrides; :mod:`toolkit.commands.overrides` names the
valid keys when one does not exist.
"""
