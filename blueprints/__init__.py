"""One blueprint per capability. Each trigger is a thin adapter: parse input, call `shared`, map."""
