"""Attention pictures: token heatmaps, matrices, image overlays."""
