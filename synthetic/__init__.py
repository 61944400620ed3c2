"""The SYNTHETIC world: format-faithful datasets rendered from the synthetic body model."""
