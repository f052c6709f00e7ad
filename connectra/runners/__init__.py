"""Runners: the first_time and retry worker pools and the daemon that hosts them."""
