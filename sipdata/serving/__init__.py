"""The one decision path and the lookups, fed by the cache with read-through to the database."""
