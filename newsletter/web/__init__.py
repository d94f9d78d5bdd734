"""The web side: public pages, admin pages, JSON API and the provider webhook."""
