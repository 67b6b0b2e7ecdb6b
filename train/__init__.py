"""Training, distillation, curriculum and quantization code that produces models/ artifacts (torch)."""
