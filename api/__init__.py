"""The read-only HTTP API of dagloop (Dagu-compatible `/api/v2`), served by waitress.

`api.app.create_app(...)` builds the falcon application from its dependencies (settings, a
read-only store factory, the DAG catalog); `controller.commands.server` and `start_all` serve it.
Nothing in this package writes state.
"""
