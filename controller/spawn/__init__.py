"""Starting runner processes, shared by the loop and the workers: `runner_process` (start one,
forked or spawned), the fork-server's `client` (in the controller), its `server` program and
what its forked `child` does, and the line `protocol` between them.

The loop and the workers import only `runner_process`, `client` and `protocol`, which import
neither the server nor the engine.
"""
