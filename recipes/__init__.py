"""Recipes: one LightningModule + LightningDataModule per task, configured by Hydra."""
