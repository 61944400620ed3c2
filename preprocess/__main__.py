"""`python -m preprocess`: prints its usage until its issue lands."""
import sys

USAGE = """usage: python -m preprocess ...

stage one: dataset readers, detector crops and heatmap sampling into Zarr stores (issues 3, 4, 7).
Not built yet: this entry point prints its usage until its issue lands."""

if __name__ == "__main__":
    print(USAGE)
    sys.exit(2)
