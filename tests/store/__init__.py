"""The store on both databases: SQLite (embedded) and PostgreSQL (a throwaway server)."""
