"""The HTTP edge: thin aiohttp handlers, one error middleware, ops endpoints."""
