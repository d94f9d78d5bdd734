"""Vocabulary and pure rules every layer shares: settings, timing, signed tokens."""
