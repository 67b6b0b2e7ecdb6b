"""Pipeline stages, one module per stage: asr, fec, vlm, context, fusion."""
