"""What the report shows for each recipe: the ``report:`` block of ``conf/recipe/<name>.yaml``
(conf/recipe/README.md) with defaults filled in. Read by the later stages; imports none of
them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.paths import CONF_DIR


@dataclass
class RecipeReport:
    """What the report shows for one recipe (the ``report:`` block, defaults filled in)."""

    name: str
    metrics: list[str]
    primary: str
    higher_is_better: bool = True
    attentions: list[str] = field(default_factory=lambda: ["additive", "multihead"])
    diagnostics: list[str] | None = None  # None = every attention_* key found in the runs
    profiles: dict[str, list[str]] = field(default_factory=dict)  # profile -> overrides
    # profile -> attention types (`attentions_<profile>:` in the block), else `attentions`
    profile_attentions: dict[str, list[str]] = field(default_factory=dict)
    # the validation metric of the learning curves (`recipe.monitor`, e.g. ``val/accuracy``);
    # empty: ``val/<primary>``
    monitor: str = ""

    def overrides(self, profile: str) -> list[str] | None:
        """The recipe's overrides for ``profile`` (None = the recipe gave none)."""
        return self.profiles.get(profile)

    def attentions_for(self, profile: str) -> list[str]:
        """The attention types ``profile`` compares for this recipe."""
        return self.profile_attentions.get(profile) or self.attentions

    @property
    def curve_metric(self) -> str:
        """The CSV-log column of the learning curves."""
        return self.monitor or f"val/{self.primary}"


def report_from_config(name: str, cfg: Any) -> RecipeReport:
    """Build the spec from a composed train config (DictConfig or dict) of recipe ``name``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    recipe = cfg.get("recipe") or {}
    block = dict(cfg.get("report") or {})
    monitor = str(recipe.get("monitor") or "")
    primary = block.pop("primary", None) or (monitor.split("/")[-1] if monitor else None)
    metrics = list(block.pop("metrics", None) or ([primary] if primary else []))
    primary = primary or (metrics[0] if metrics else "")
    if primary and primary not in metrics:
        metrics.insert(0, primary)
    higher = block.pop("higher_is_better", None)
    if higher is None:
        higher = recipe.get("monitor_mode", "max") != "min"
    attentions = list(block.pop("attentions", None) or ["additive", "multihead"])
    diagnostics = block.pop("diagnostics", None)
    profile_attentions = {
        k.removeprefix("attentions_"): [str(a) for a in block.pop(k)]
        for k in [k for k in block if k.startswith("attentions_")]
    }
    profiles = {k: [str(o) for o in v] for k, v in block.items() if isinstance(v, list)}
    unknown = sorted(k for k, v in block.items() if not isinstance(v, list))
    if unknown:
        raise ValueError(
            f"recipe {name!r}: unknown report keys {unknown}; valid: metrics, primary, "
            "higher_is_better, attentions, attentions_<profile>, diagnostics, and one "
            "override list per profile"
        )
    return RecipeReport(
        name=name,
        metrics=metrics,
        primary=primary,
        higher_is_better=bool(higher),
        attentions=attentions,
        diagnostics=list(diagnostics) if diagnostics is not None else None,
        profiles=profiles,
        profile_attentions=profile_attentions,
        monitor=monitor,
    )


def compose_train(overrides: Sequence[str], conf_dir: str = CONF_DIR):
    """The composed ``train`` config, inside a running Hydra app or standalone."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=list(overrides))
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def recipe_names(conf_dir: str = CONF_DIR) -> list[str]:
    """Every recipe with a ``conf/recipe/<name>.yaml``."""
    return sorted(p.stem for p in Path(conf_dir, "recipe").glob("*.yaml"))


def recipe_report(name: str, conf_dir: str = CONF_DIR) -> RecipeReport:
    """The spec of recipe ``name``, read by composing ``train`` with ``recipe=name``; a
    recipe that is not in ``conf/recipe/`` (a run from elsewhere) gets the defaults."""
    if name not in recipe_names(conf_dir):
        return report_from_config(name, {})
    return report_from_config(name, compose_train([f"recipe={name}"], conf_dir))
