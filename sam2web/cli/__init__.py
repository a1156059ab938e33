"""Layer 6, the command line: ``python -m sam2web track|serve`` and batches on Ray."""
