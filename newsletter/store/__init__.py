"""The database: models, sessions, migrations, queries."""
