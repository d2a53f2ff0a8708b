"""The vocabulary of dagloop: DAG spec models, the loader, statuses and configuration.

Nothing here does I/O beyond reading and parsing files.
"""

__version__ = "0.1.0"
