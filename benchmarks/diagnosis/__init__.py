"""Issue-15 diagnostics of the 2D floor (docs/diagnosis.md): each module is one measurement,
`python -m benchmarks.diagnosis.<name> [key=value …]`."""
