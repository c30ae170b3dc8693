"""The server itself: liveness, readiness, metrics, instance information and API docs."""
