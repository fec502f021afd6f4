"""Preprocessing, model, tuning and training code that TFX loads by dotted path."""
