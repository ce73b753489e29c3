"""Everything that talks to Redis: connections, key names, Lua scripts, live state."""
