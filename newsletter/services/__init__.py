"""Use cases behind the entry points: signup, preferences, roster, import, export, series admin, mailing, admin auth."""
