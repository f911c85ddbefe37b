"""The control plane: reconciler, rollouts, supervisor and the autoscaler policy."""
