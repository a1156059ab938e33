"""Layer 3, compute elsewhere: a propagation as a self-contained job for a lent GPU (ZeroGPU)
or a Ray cluster."""
