"""ConfigMgr Cloud Bootstrap: the domain package. Triggers in `blueprints/` call into it."""
