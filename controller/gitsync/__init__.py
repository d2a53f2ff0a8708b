"""git_sync: the DAGs directory as a checkout of a git branch, pulled, validated and switched
atomically (Dagu 2.6's `git_sync` settings, pull only).

- `git`: the `git` commands as values (argv + environment, credentials only in the environment)
  and the one function that runs them;
- `checkouts`: the layout under `<DAGU_HOME>/gitsync/`, the atomic symlink switch and which old
  checkouts may go (pure);
- `status`: the sync status file the API reads (`GET /api/v2/sync/status`);
- `sync`: one sync (fetch, check out, validate, switch, report), called by the control loop.

dagloop only reads the remote: it fetches, never pushes, commits or edits a file there.
"""
