"""Redis side of the admin API: cached API key rows and the per-key request counter."""

from __future__ import annotations

from sipdata.cache import keys
from sipdata.cache.client import Cache


class ApiKeyCache:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def get(self, key_hash: str) -> bytes | None:
        """The cached row, keys.NEGATIVE for a known miss, None when not cached."""
        async with self.cache.translated("read api key"):
            value: bytes | None = await self.cache.client.get(keys.api_key(key_hash))
        return value

    async def put(self, key_hash: str, doc: bytes) -> None:
        async with self.cache.translated("cache api key"):
            await self.cache.client.set(keys.api_key(key_hash), doc, px=keys.API_KEY_TTL_MS)

    async def forget(self, key_hash: str) -> None:
        """This node stops using a revoked key at once (the others within the TTL)."""
        async with self.cache.translated("forget api key"):
            await self.cache.client.delete(keys.api_key(key_hash))

    async def count(self, key_id: str, window: int, window_s: int) -> int:
        """This request's number in the key's window (INCR and its expiry in one MULTI)."""
        name = keys.api_rate(key_id, window)
        async with (
            self.cache.translated("count api request"),
            self.cache.client.pipeline(transaction=True) as pipe,
        ):
            pipe.incr(name)
            pipe.expire(name, 2 * window_s, nx=True)
            counted, _ = await pipe.execute()
        return int(counted)
