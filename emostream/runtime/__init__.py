"""The stage runtime: stages, pipelines, the stage registry, typed errors."""
