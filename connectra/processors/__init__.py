"""Job types: the extension point (`base`), the built-in job types, what both directions share."""
