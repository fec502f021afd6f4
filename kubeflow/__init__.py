"""Kubeflow Pipelines runner for the bookcover pipeline."""
