"""Development tooling: `make run` (`python -m devtools.run`), its demo, and the loopback fakes.

Nothing here is deployed (.funcignore). The fakes are real HTTP servers on loopback that stand in
for Microsoft Graph (`fakes.graph`), the App Service managed-identity endpoint (`fakes.identity`)
and the Entra ID issuer (`fakes.entra`); `devices` simulates an Entra-joined Windows device. The
demo (`demo`, `demo_fleet`) and the tests use them alike. This package may import the development
host and `shared`; the product never imports it.
"""
