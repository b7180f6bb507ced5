"""Pruning: importance criteria, allocation of kept channels, and the methods."""
