"""Shared low-level code below the stages: configuration and deterministic seeding."""
