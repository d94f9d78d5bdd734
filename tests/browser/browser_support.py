"""Constants the browser tests share with their fixtures."""

ADMIN_PASSWORD = "therapist's own long password"  # conftest.admin_server signs in with it
