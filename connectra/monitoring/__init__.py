"""Seeing and operating what runs: readiness checks, the collectors read at scrape time, and
the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`) of the API and of runner processes.
The metrics themselves are declared in `connectra/metrics.py`."""
