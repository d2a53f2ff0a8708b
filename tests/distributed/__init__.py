"""Several controllers and workers as separate processes on one PostgreSQL database."""
