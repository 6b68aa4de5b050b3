"""What the app tells its operators: Prometheus metrics and log filters."""
