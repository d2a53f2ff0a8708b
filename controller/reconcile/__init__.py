"""Reconciliation: what is wanted (desired), what is (observed), and the pure rules that
turn them into actions. Read-only: the loop acts on the actions, the plan view only shows them."""
