"""Several hosts on PostgreSQL: leader election and workers."""
