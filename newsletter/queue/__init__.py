"""Redis: the due set, leases, the tick lock, the embedded server."""
