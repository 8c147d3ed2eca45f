"""Task metrics and attention diagnostics."""
