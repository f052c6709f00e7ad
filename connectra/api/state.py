"""Typed keys for what the API keeps on its application."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from connectra.db.store import JobStore
from connectra.jobs import Job
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobTypeRegistry
from connectra.settings import Settings

JobCreatedCallback = Callable[[Job], None]

STORE = web.AppKey("store", JobStore)
REGISTRY = web.AppKey("registry", JobTypeRegistry)
SETTINGS = web.AppKey("settings", Settings)
ON_JOB_CREATED = web.AppKey[JobCreatedCallback | None]("on_job_created")
OBJECTS = web.AppKey[ObjectStore | None]("objects")
