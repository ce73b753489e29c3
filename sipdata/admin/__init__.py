"""The admin API: keys, validation and the OpenAPI document (pure)."""
