"""The demo: the model on any image (`python -m infer IMAGE …`, `make infer IMAGE=…`)."""
