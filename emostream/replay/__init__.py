"""Offline replay of MELD episodes through the live pipeline, with an evaluation report.

layout (find CSV + clips), synth (build a MELD-layout folder of spoken face videos), ingest/media (clips
-> Utterances through the live segmenter and frame buffer), run (drive the in-process pipeline),
collect (events + trainable features), metrics/report (numbers and plots), state (resume).
"""
