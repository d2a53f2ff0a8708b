"""The behaviour of dagloop: run engine, store, control loop, notifications and the CLI."""
