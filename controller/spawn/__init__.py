"""Starting runner processes: the fork-server and its client, shared by the loop and the workers."""
