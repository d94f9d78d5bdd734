"""The database: models, sessions, migrations, queries."""

# Registers the admin's saved practice settings with core.config.effective (see practice.py).
from newsletter.store import practice as _practice  # noqa: F401
