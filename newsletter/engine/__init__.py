"""The sending engine: plan, send, advance, reconcile, tick, provider events."""
