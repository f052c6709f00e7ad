"""Example job types for Connectra Jobs, loaded with `--app examples.webhooks:registry`."""
