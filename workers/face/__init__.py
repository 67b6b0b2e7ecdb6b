"""Facial analysis for the `fec` stage: landmarks/blendshapes/head pose, expression, selection, masking."""
