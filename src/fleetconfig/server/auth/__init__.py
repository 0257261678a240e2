"""Who calls the Platform API: API keys, their scopes, and the principal a request acts as."""
