"""The discovery capability's triggers (see its issue). Thin adapters over `shared.discovery`."""

import azure.functions as func

bp = func.Blueprint()
