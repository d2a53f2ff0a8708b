"""One module per CLI verb; `controller.cli` imports only the one that is asked for.

Each module defines ``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int`` (the process exit code).
"""
