"""Step executors other than the shell: http, jq and mail."""
