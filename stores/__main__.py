"""`python -m stores`: prints its usage until its issue lands."""
import sys

USAGE = """usage: python -m stores ...

the contract between the stages: Zarr store schema, atomic block writer, readers, verify (issue 4).
Not built yet: this entry point prints its usage until its issue lands."""

if __name__ == "__main__":
    print(USAGE)
    sys.exit(2)
