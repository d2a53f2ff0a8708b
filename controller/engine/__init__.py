"""The engine: executes one DAG run in its own process (the runner, its policies and executors)."""
