"""The API sections, one module per section of the API reference; they never import each other."""
