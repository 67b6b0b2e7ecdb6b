"""emostream: streaming, real-time, multimodal conversation analyzer."""

__version__ = "0.1.0"
