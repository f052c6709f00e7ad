"""A real browser on the dashboard: headless Chromium driven by selenium, against the API on a
loopback port with a real JobStore, moto S3 and in-process runners, so that jobs really run.

Without Chromium, chromedriver or selenium the tests are skipped, except when `CI` is set:
there a missing browser fails the run (`.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from connectra.api.app import create_app
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, JobStatus
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobContext, JobTypeRegistry, Services
from connectra.processors.demo import NOOP, SLEEP
from connectra.processors.exporting.job_type import EXPORT_CSV_FILE
from connectra.processors.importing.job_type import INSERT_CSV_FILE, InsertCsvData, run_insert_csv
from connectra.retry import RetryPolicy
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import Settings, load_settings
from tests.polling import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 800)
KEY = "browser-test-key"
BATCH_ROWS = 50
# The import pauses this long after each batch, so its progress can be watched.
PAUSE_PER_BATCH = 0.2

# A conftest cannot skip itself; the test modules skip (or, under CI, fail) on this.
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as exc:  # pragma: no cover - the dev dependencies include selenium
    SELENIUM_MISSING: str | None = f"selenium cannot be imported: {exc}"
else:
    SELENIUM_MISSING = None

T = TypeVar("T")


@pytest.fixture(scope="session")
def driver() -> Iterator[WebDriver]:
    """One headless Chromium for the run, or a skip (a failure under CI) when there is none."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = (
            f"no browser for the dashboard tests ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    # The driver path is given: selenium's own manager would try to download one.
    chrome = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    width, height = WINDOW
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield chrome
    finally:
        chrome.quit()


@dataclasses.dataclass
class Browser:
    """The browser, driven from async tests: every selenium call runs in a thread, so the
    server and runners on this event loop keep answering it."""

    driver: WebDriver
    base_url: str
    downloads: Path

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run one blocking selenium call off the event loop."""
        return await asyncio.to_thread(function, *args)

    async def open(self, path: str) -> None:
        """Load a dashboard page."""
        await self.call(self.driver.get, self.base_url + path)

    async def until(self, condition: Callable[[WebDriver], T], within: float = 20) -> T:
        """Wait for a condition on the page to hold (a truthy value), and return it."""
        wait = WebDriverWait(self.driver, within, poll_frequency=0.05)
        return await self.call(wait.until, condition)

    async def script(self, source: str, *args: Any) -> Any:
        """Run JavaScript in the page."""
        return await self.call(self.driver.execute_script, source, *args)

    async def text(self, css: str) -> str:
        """The visible text of the first element matching `css`."""
        return await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text)

    async def click(self, css: str) -> None:
        """Click the first element matching `css`."""
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def type(self, css: str, text: str) -> None:
        """Type into the first element matching `css`."""
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(text))

    async def sign_in(self, key: str = KEY) -> None:
        """Sign in through the form and land on the jobs page."""
        await self.open("/ui/signin")
        await self.type("#api-key", key)
        await self.click("#signin-form button[type=submit]")
        await self.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-region=counts]"))

    async def job_status(self) -> str:
        """The state the open job page shows."""
        return str(await self.script("return document.querySelector('.job-head').dataset.status"))

    async def screenshot(self, path: Path) -> None:
        """A PNG of the window."""
        await self.call(self.driver.save_screenshot, str(path))


@dataclasses.dataclass
class Dashboard:
    """The served app and what the tests use beside the browser."""

    browser: Browser
    api: aiohttp.ClientSession
    store: JobStore
    objects: ObjectStore
    bucket: str

    async def create(self, job_type: str, data: dict[str, Any], **options: Any) -> str:
        """Create a job through the HTTP API; its uuid."""
        body = {"job_type": job_type, "job_data": data, **options}
        async with self.api.post("/common/jobs/create", json=body) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["uuid"])

    async def status_of(self, uuid: str) -> JobStatus:
        """The job's state in the database."""
        return (await self.store.get(UUID(uuid))).status

    async def reaches(self, uuid: str, status: JobStatus, within: float = 30) -> None:
        """Wait for the job to be in `status`."""

        async def check() -> bool:
            return await self.status_of(uuid) is status

        await eventually(check, within)

    async def upload(self, key: str, body: bytes) -> None:
        """Put an object in the test bucket."""
        await self.objects.client.put_object(Bucket=self.bucket, Key=key, Body=body)


async def _paused_import(ctx: JobContext, data: InsertCsvData) -> dict[str, Any]:
    """The real import, pausing after each batch's checkpoint so that it can be watched."""
    save = ctx.save_checkpoint

    async def save_then_pause(checkpoint: dict[str, Any]) -> None:
        await save(checkpoint)
        await asyncio.sleep(PAUSE_PER_BATCH)

    ctx.save_checkpoint = save_then_pause
    return await run_insert_csv(ctx, data)


def watchable_registry() -> JobTypeRegistry:
    """The built-in job types, with an import slowed down to a watchable pace."""
    slow_import = dataclasses.replace(INSERT_CSV_FILE, handler=_paused_import)
    return JobTypeRegistry([slow_import, EXPORT_CSV_FILE, NOOP, SLEEP])


@contextlib.asynccontextmanager
async def runners(
    store: JobStore, registry: JobTypeRegistry, settings: Settings, objects: ObjectStore
) -> AsyncIterator[None]:
    """A first_time and a retry runner working in the background for the block."""
    services = Services(pool=store.pool, objects=objects)
    stops, tasks = [], []
    for kind in (FIRST_TIME, RETRY):
        config = RunnerConfig(
            kind=kind,
            concurrency=4,
            queue_size=10,
            tick_interval=timedelta(seconds=0.05),
            shutdown_grace=timedelta(seconds=5),
            retry_policy=RetryPolicy(),
            heartbeat_interval=timedelta(seconds=0.3),
        )
        runner = Runner(store, registry, settings, config, services=services)
        stops.append(Stopping())
        tasks.append(asyncio.create_task(runner.run(stops[-1])))
    try:
        yield
    finally:
        for stopping in stops:
            stopping.request()
            stopping.request()  # hard: tests leave long sleeps running
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


@pytest.fixture
async def dashboard(
    driver: WebDriver,
    store: JobStore,
    object_store: ObjectStore,
    s3_bucket: str,
    tmp_path: Path,
) -> AsyncIterator[Dashboard]:
    """The API with the dashboard on 127.0.0.1, runners behind it, and a clean browser."""
    settings = load_settings(API_KEYS=KEY, S3_BUCKET=s3_bucket, BATCH_SIZE_FOR_INSERTION=BATCH_ROWS)
    registry = watchable_registry()
    app = create_app(store, registry, settings, objects=object_store)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base_url = str(server.make_url("")).rstrip("/")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    behaviour = {"behavior": "allow", "downloadPath": str(downloads)}
    await asyncio.to_thread(driver.execute_cdp_cmd, "Browser.setDownloadBehavior", behaviour)
    browser = Browser(driver, base_url, downloads)
    await asyncio.to_thread(driver.delete_all_cookies)
    try:
        async with (
            aiohttp.ClientSession(base_url, headers={"X-API-Key": KEY}) as api,
            runners(store, registry, settings, object_store),
        ):
            yield Dashboard(browser, api, store, object_store, s3_bucket)
    finally:
        await browser.call(driver.get, "about:blank")
        await server.close()
