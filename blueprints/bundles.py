"""The bundles capability's triggers (see its issue). Thin adapters over `shared.bundles`."""

import azure.functions as func

bp = func.Blueprint()
