"""Triton kernels and their torch references (installed as cachesvc.kernels)."""
