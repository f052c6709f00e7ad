"""Job types: each module defines one, with its data model and its handler."""
