"""The reports capability's triggers (see its issue). Thin adapters over `shared.reports`."""

import azure.functions as func

bp = func.Blueprint()
