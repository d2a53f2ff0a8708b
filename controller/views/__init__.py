"""Read models shared by the CLI and the API: runs in Dagu's shapes and the plan document."""
