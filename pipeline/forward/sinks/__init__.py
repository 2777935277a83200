"""Sink implementations, one module per destination family."""
