"""The HTTP event API of ``emostream serve``: tokens, per-room event streams, SSE/WebSocket/JSON."""
