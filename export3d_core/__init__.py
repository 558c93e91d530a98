"""Export3D in PyTorch: the public API (DESIGN.md §2)."""
