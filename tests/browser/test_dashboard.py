"""The dashboard in a real browser: sign in, watch jobs come and move, act on them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from tests.browser.conftest import KEY, SELENIUM_MISSING, Dashboard

if SELENIUM_MISSING and not os.environ.get("CI"):
    pytest.skip(SELENIUM_MISSING, allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from connectra.jobs import JobStatus
from tests.polling import eventually

S = JobStatus
CONTACTS_HEADER = "uuid,first_name,last_name,email,country"
# `CONNECTRA_SCREENSHOTS_DIR=docs` writes the screenshots of the docs' Dashboard page
# (docs/dashboard.md); otherwise a temporary folder.
SCREENSHOTS_DIR = os.environ.get("CONNECTRA_SCREENSHOTS_DIR")


def contacts_csv(count: int, bad_lines: int = 0) -> bytes:
    """A contacts file of `count` good rows, then `bad_lines` rows with a broken uuid."""
    rows = [
        f"{UUID(int=i + 1)},First{i},Last{i},user{i}@example.com,{['US', 'DE'][i % 2]}"
        for i in range(count)
    ]
    rows += [f"not-a-uuid-{i},Bad,Row,bad{i}@example.com,FR" for i in range(bad_lines)]
    return ("\n".join([CONTACTS_HEADER, *rows]) + "\n").encode()


async def test_signing_in_shows_a_job_created_through_the_api_without_a_reload(
    dashboard: Dashboard,
) -> None:
    browser = dashboard.browser
    await browser.open("/ui")
    assert "/ui/signin?next=" in browser.driver.current_url

    await browser.type("#api-key", "wrong-key")
    await browser.click("#signin-form button[type=submit]")
    assert await browser.text(".alert") == "This key is not accepted."

    await browser.sign_in()
    assert browser.driver.current_url == browser.base_url + "/ui"
    assert "No job matches" in await browser.text("[data-region=jobs]")
    await browser.script("window.notReloaded = true")

    uuid = await dashboard.create("noop", {}, queue="reports", delay_seconds=3600)
    row = f"tr[data-uuid='{uuid}']"
    await browser.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert "noop" in await browser.text(row)
    assert "scheduled" in await browser.text(row)
    assert await browser.text("[data-count-status=scheduled] .tile-count") == "1"
    assert "reports" in await browser.text("[data-count-queue=reports]")
    assert await browser.script("return window.notReloaded") is True


async def test_the_key_stays_in_the_tab_and_never_in_a_url_or_cookie(
    dashboard: Dashboard,
) -> None:
    browser = dashboard.browser
    await browser.sign_in()
    assert await browser.script("return sessionStorage.getItem('connectra.apiKey')") == KEY
    [cookie] = await browser.call(browser.driver.get_cookies)
    assert cookie["name"] == "connectra_ui"
    assert KEY not in cookie["value"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert "expiry" not in cookie, "a session cookie: gone when the browser session ends"

    uuid = await dashboard.create("noop", {})
    await browser.open(f"/ui/jobs/{uuid}")
    await browser.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".job-head"))
    urls = await browser.script(
        "return [location.href, ...performance.getEntries().map(e => e.name)]"
    )
    assert urls, "the page made requests"
    assert not [url for url in urls if KEY in url]

    await browser.click("#signout-form button")
    await browser.until(lambda d: d.find_elements(By.ID, "signin-form"))
    assert await browser.script("return sessionStorage.getItem('connectra.apiKey')") is None
    assert await browser.call(browser.driver.get_cookies) == []
    await browser.open("/ui")
    assert "/ui/signin" in browser.driver.current_url


async def test_an_imports_progress_bar_moves_while_it_runs(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    await dashboard.upload("in/contacts.csv", contacts_csv(1500, bad_lines=2))
    await browser.sign_in()
    uuid = await dashboard.create("insert_csv_file", {"s3_key": "in/contacts.csv"})
    await browser.open(f"/ui/jobs/{uuid}")
    await browser.script("window.notReloaded = true")

    seen: list[int] = []
    status = ""
    for _ in range(600):
        status, value = await browser.script(
            "const bar = document.querySelector('.progress-card progress');"
            "return [document.querySelector('.job-head').dataset.status,"
            " bar && bar.hasAttribute('value') ? Number(bar.value) : null]"
        )
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        if status == "completed":
            break
        await asyncio.sleep(0.1)
    assert status == "completed", f"the import did not complete: {seen}"

    between = [value for value in seen if 0 < value < 1000]
    assert len(between) >= 3, f"the bar did not move in steps: {seen}"
    assert between == sorted(between)
    assert seen[-1] == 1000
    assert await browser.script("return window.notReloaded") is True
    label = await browser.text(".progress-card .bar-label")
    assert label.startswith("1,500 rows processed · 2 failed")
    errors = await browser.text("#runtime-errors")
    assert "line 1502" in errors
    assert "not-a-uuid-0" in errors


async def test_a_running_job_is_cancelled_from_its_page(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    await browser.sign_in()
    uuid = await dashboard.create("sleep", {"seconds": 60})
    await dashboard.reaches(uuid, S.PROCESSING)
    await browser.open(f"/ui/jobs/{uuid}")
    assert await browser.job_status() == "processing"

    await browser.click("button[data-action=cancel]")
    alert = await browser.until(lambda d: d.switch_to.alert)
    assert alert.text == "Cancel this job?"
    await browser.call(alert.accept)

    await browser.until(lambda d: d.find_element(By.ID, "flash").text)
    assert "Cancel requested" in await browser.text("#flash")
    await dashboard.reaches(uuid, S.ABORTED, within=10)
    await browser.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-status=aborted]"))
    assert not await browser.call(
        browser.driver.find_elements, By.CSS_SELECTOR, "button[data-action=cancel]"
    )


async def test_a_failed_import_is_retried_from_its_page(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    await browser.sign_in()
    uuid = await dashboard.create("insert_csv_file", {"s3_key": "late/contacts.csv"})
    await dashboard.reaches(uuid, S.FAILED_FINAL)
    await browser.open(f"/ui/jobs/{uuid}")
    assert "ERR_S3_OBJECT_NOT_FOUND" in await browser.text("[data-region=job-errors]")

    await dashboard.upload("late/contacts.csv", contacts_csv(120))
    await browser.click("button[data-action=retry]")
    await dashboard.reaches(uuid, S.COMPLETED)
    assert "Job reopened" in await browser.text("#flash")
    await browser.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-status=completed]"))
    assert "120 rows processed" in await browser.text(".progress-card")


async def test_an_export_is_downloaded_from_its_page(
    dashboard: Dashboard, pool: asyncpg.Pool
) -> None:
    browser = dashboard.browser
    await pool.executemany(
        "INSERT INTO contacts (uuid, first_name, email) VALUES ($1, $2, $3)",
        [(uuid4(), "Ada", "ada@example.com"), (uuid4(), "Grace", "grace@example.com")],
    )
    await browser.sign_in()
    vql = {
        "select_columns": ["first_name", "email"],
        "order_by": [{"order_by": "email", "order_direction": "asc"}],
    }
    uuid = await dashboard.create("export_csv_file", {"service": "contact", "vql": vql})
    await dashboard.reaches(uuid, S.COMPLETED)
    await browser.open(f"/ui/jobs/{uuid}")

    await browser.click("button[data-action=download]")
    saved = browser.downloads / f"{uuid}.csv"
    await eventually(lambda: _exists(saved), within=10)
    assert (
        await asyncio.to_thread(saved.read_text)
        == "first_name,email\nAda,ada@example.com\nGrace,grace@example.com\n"
    )
    link = await browser.call(
        lambda: browser.driver.find_element(By.ID, "download-link").get_attribute("href")
    )
    assert link is not None
    assert f"/{dashboard.bucket}/" in link
    assert "X-Amz-Signature=" in link
    assert KEY not in link


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def test_job_data_is_shown_as_text_and_never_run(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    payload = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    uuid = await dashboard.create("noop", {"note": payload})
    await dashboard.reaches(uuid, S.COMPLETED)
    await browser.sign_in()
    await browser.open(f"/ui/jobs/{uuid}")

    assert payload.replace('"', '\\"') in await browser.text("#job-data")
    assert not await browser.call(
        browser.driver.find_elements, By.CSS_SELECTOR, "main script, main img"
    )
    assert await browser.script("return window.pwned") is None
    _no_alert(browser.driver)

    await browser.open(f"/ui?uuid={payload}")
    assert "is not a UUID" in await browser.text(".alert")
    assert await browser.script("return window.pwned") is None
    _no_alert(browser.driver)


def _no_alert(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the property raises when there is none


async def test_a_tab_without_the_key_asks_for_it_before_acting(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    await browser.sign_in()
    uuid = await dashboard.create("sleep", {"seconds": 2, "fail_attempts": 5})
    await dashboard.reaches(uuid, S.FAILED_FINAL)
    # As in a new tab: the cookie renders the page, but sessionStorage holds no key.
    await browser.script("sessionStorage.clear()")
    await browser.open(f"/ui/jobs/{uuid}")

    await browser.click("button[data-action=retry]")
    await browser.until(lambda d: d.find_element(By.ID, "key-form").is_displayed())
    await asyncio.sleep(0.3)  # the point: no request goes out while the key is asked for
    assert await dashboard.status_of(uuid) is S.FAILED_FINAL, "acted without the key"

    await browser.type("#key-input", "not-the-key")
    await browser.click("#key-form button")
    await browser.until(lambda d: "did not accept" in d.find_element(By.ID, "flash").text)
    assert await dashboard.status_of(uuid) is S.FAILED_FINAL

    await browser.type("#key-input", KEY)
    await browser.click("#key-form button")
    await browser.until(lambda d: "Job reopened" in d.find_element(By.ID, "flash").text)
    assert await dashboard.status_of(uuid) in (S.OPEN, S.IN_QUEUE, S.PROCESSING)


async def test_the_readme_screenshots(dashboard: Dashboard, tmp_path: Path) -> None:
    """A list with jobs in many states and an import running, then that import's page."""
    browser = dashboard.browser
    await dashboard.upload("in/big.csv", contacts_csv(6000))
    await dashboard.upload("in/small.csv", contacts_csv(800, bad_lines=3))
    small = await dashboard.create("insert_csv_file", {"s3_key": "in/small.csv"})
    await dashboard.create("insert_csv_file", {"s3_key": "in/missing.csv"})
    await dashboard.reaches(small, S.COMPLETED)
    vql = {"select_columns": ["first_name", "email", "country"]}
    await dashboard.create("export_csv_file", {"service": "contact", "vql": vql}, queue="reports")
    aborted = await dashboard.create("sleep", {"seconds": 30}, queue="bulk")
    async with dashboard.api.post(f"/common/jobs/{aborted}/cancel"):
        pass
    await dashboard.create("sleep", {"seconds": 60}, queue="bulk")
    for hours in (1, 6):
        await dashboard.create("noop", {}, queue="reports", delay_seconds=hours * 3600)
    big = await dashboard.create("insert_csv_file", {"s3_key": "in/big.csv"})
    await browser.sign_in()
    await browser.open(f"/ui/jobs/{big}")
    await browser.until(lambda d: _progress(d) >= 350, within=60)
    await browser.screenshot(_screenshot_path("dashboard-job.png", tmp_path))
    await browser.open("/ui")
    await browser.screenshot(_screenshot_path("dashboard-list.png", tmp_path))


def _progress(driver: WebDriver) -> int:
    value = driver.execute_script(
        "const bar = document.querySelector('.progress-card progress');"
        "return bar && bar.hasAttribute('value') ? Number(bar.value) : 0"
    )
    return int(value)


def _screenshot_path(name: str, tmp_path: Path) -> Path:
    """Where a screenshot goes: the docs' folder when asked for, else the test's."""
    folder = Path(SCREENSHOTS_DIR) if SCREENSHOTS_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
