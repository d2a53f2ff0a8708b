"""The control loop: desired state, observed state, the pure reconciler, and the applier."""
