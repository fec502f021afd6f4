"""Custom TFX components of the bookcover pipeline."""
