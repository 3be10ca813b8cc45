"""The engine: networks, graphs, planning, contraction and gradients, compiled kernels, sparse data."""
