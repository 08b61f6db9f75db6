"""Loopback stand-ins for the services the app calls, as real HTTP servers (see `devtools`)."""
