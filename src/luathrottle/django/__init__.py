"""Django throttling over the Lua core."""
