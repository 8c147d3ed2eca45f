"""Attention mechanisms across text, vision and speech: one block library, Lightning recipes."""

__version__ = "0.1.0"
