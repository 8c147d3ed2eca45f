"""Training plumbing shared by the commands and the recipes.

* :mod:`toolkit.training.module`: ``RecipeModule``, the LightningModule base of every recipe;
* :mod:`toolkit.training.checkpoints`: checkpoint files (atomic writes, safe loading with
  clear errors, safetensors exports, ``load_module``);
* :mod:`toolkit.training.resume`: exact mid-epoch resume (data position, random state);
* :mod:`toolkit.training.callbacks`: the callbacks of the ``callbacks`` config group;
* :mod:`toolkit.training.schedules`: learning-rate schedules (``scheduler`` group);
* :mod:`toolkit.training.precision`: the numeric precision chosen for the machine;
* :mod:`toolkit.training.compile`: ``compile=true``, the model compiled in place (with its
  fall-backs counted).
"""
