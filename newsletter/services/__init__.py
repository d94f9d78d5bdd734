"""Use cases behind the entry points: subscribers, roster, admin auth."""
