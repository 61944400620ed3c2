"""The contract between the stages: Zarr store schema, atomic block writer, readers, verify."""
