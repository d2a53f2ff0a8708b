"""The state database: the only code that talks SQL, its schema and its migrations."""
