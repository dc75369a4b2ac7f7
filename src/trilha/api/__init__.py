"""The HTTP API (``trilha serve``): FastAPI routes over the engine and the store."""
