"""Built-in plugins of this kind register themselves on import."""
