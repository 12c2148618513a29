"""Naturally-Sorted Hashing."""
