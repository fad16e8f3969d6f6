"""Fused / memory-lean attention paths; the plain PyTorch path in attention.py is the reference."""
