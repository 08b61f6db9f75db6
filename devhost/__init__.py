"""The development host: runs the function app locally as the Functions host would.

`python -m devhost --port PORT` (`__main__`) serves `function_app.app`; `make run` starts it
through the development tooling (`python -m devtools.run`: Azurite, demo servers, host);
`devhost.azurite` starts the pinned Azurite.
Inside: `config` (local.settings.json, host.json, `%SETTING%`), `app_index` (bindings),
`invoke` (binding converters), `http`/`routes`, `timers`, `queues`, `eventgrid`, `host`.
Nothing is imported here, so `devhost.azurite` stays cheap to import.
"""
