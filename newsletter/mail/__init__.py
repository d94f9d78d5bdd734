"""Messages: rendering, MIME, provider backends and their outcomes."""
