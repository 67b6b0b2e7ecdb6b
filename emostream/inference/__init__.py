"""Models at run time: the ONNX session factory, Whisper, the text model, encoder, fusion head."""
