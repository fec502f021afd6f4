"""Classifying a catalogue: Beam RunInference over a books CSV's covers (classify.py), the
model handler (inference.py), and ClassifyCatalogue, the pipeline step (component.py)."""
