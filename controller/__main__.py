"""`python -m controller` is the `dagloop` command."""

from controller.cli import main

raise SystemExit(main())
