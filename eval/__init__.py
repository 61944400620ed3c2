"""Evaluation: EMDB, 3DPW and synthetic protocols, reports and plots."""
