"""Helpers for deploypipe's tests and fuzzers (random graphs, weight materialisation)."""
