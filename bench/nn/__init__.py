"""Shared neural-network building blocks (residual units, AdaIN, VGG19 features)."""
