"""The function app: builds `app` and registers one blueprint per capability. No logic here.

`shutdown` is awaited by a host that stops the app but keeps running (the development host).
"""

import azure.functions as func

from blueprints import bundles, console, discovery, health, profiles, reports
from shared.shutdown import close_clients
from shared.telemetry import configure_telemetry

configure_telemetry()  # Application Insights when configured; log redaction always

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (health.bp, discovery.bp, bundles.bp, reports.bp, profiles.bp, console.bp):
    app.register_functions(blueprint)

shutdown = close_clients
