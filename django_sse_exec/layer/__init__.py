"""The channel layer: which one the app uses, and what it knows of channels_redis."""
