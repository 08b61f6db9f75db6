"""The console in a real browser: Debian's headless Chromium driven by Playwright, against the
development host with a recorded fleet. Each page's screenshot is kept in artifacts/console/."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from tests.console.conftest import PROFILED_USER, Fleet
from tests.reports.helpers import http
from tests.support.devhost import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "artifacts" / "console"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000
# A pass over the test fleet takes well under a second; the queue is polled every 2 s.
FRESH_WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make browser installs it)"
)


@pytest.fixture(scope="module")
async def page(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Page]:
    """One signed-out browser page; console errors (CSP violations among them) fail the test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            browser_page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            browser_page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            browser_page.on("pageerror", lambda error: errors.append(str(error)))
            browser_page.set_default_timeout(WAIT_MS)
            yield browser_page
            # The 401 test provokes one refused call on purpose; nothing else may fail.
            assert [e for e in errors if "401" not in e] == []
        finally:
            await context.close()


async def rendered(page: Page, route: str) -> None:
    await page.wait_for_function(
        "route => document.body.dataset.rendered === route", arg=route, timeout=WAIT_MS
    )


async def screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def api(fleet: Fleet, path: str) -> Any:
    answer = http("GET", fleet.service.url(path), token=fleet.service.admin_token())
    assert answer.status == 200, answer.body
    return answer.json()


async def test_sign_in_shows_the_overview_with_the_api_numbers(page: Page, fleet: Fleet) -> None:
    started = time.monotonic()
    await page.goto(fleet.service.url("/api/console"))
    await page.click("#sign-in")
    await rendered(page, "#/overview")
    load_seconds = time.monotonic() - started
    # The overview is a snapshot: the page asks again (every 2 s) until no pass is running.
    await page.wait_for_function(
        "() => { const p = document.querySelector('[data-as-of]');"
        " return p && p.dataset.asOf && p.dataset.refreshing === 'no'; }",
        timeout=FRESH_WAIT_MS,
    )
    overview = api(fleet, "/api/devices?summary=overview")
    assert await page.get_attribute("[data-as-of]", "data-as-of") == overview["asOf"]
    assert await page.text_content("[data-total]") == str(overview["total"])
    for stage, count in overview["counts"].items():
        assert await page.text_content(f'[data-stage="{stage}"]') == str(count)
    for code, count in overview["diagnoses"].items():
        cell = page.locator(f'[data-diagnosis-count="{code}"]')
        assert (await cell.text_content() if count else await cell.count()) == (
            str(count) if count else 0
        )
    assert await page.locator("svg rect.bar").count() == 30
    await screenshot(page, "overview")
    print(f"console sign-in to overview: {load_seconds:.2f} s")


async def test_a_filter_narrows_the_device_list(page: Page, fleet: Fleet) -> None:
    await page.goto(fleet.service.url("/api/console#/devices"))
    await rendered(page, "#/devices")
    everyone = await page.locator("tr[data-device]").count()
    await page.select_option('select[name="stage"]', "failed")
    await rendered(page, "#/devices?stage=failed")
    failed = api(fleet, "/api/devices?stage=failed")["devices"]
    shown = await page.locator("tr[data-device]").evaluate_all(
        "rows => rows.map(row => row.dataset.device)"
    )
    assert sorted(shown) == sorted(d["deviceId"] for d in failed)
    assert 0 < len(shown) < everyone
    await page.select_option('select[name="diagnosis"]', "not-joined")
    await rendered(page, "#/devices?stage=failed&diagnosis=not-joined")
    assert await page.locator("tr[data-device]").evaluate_all(
        "rows => rows.map(row => row.dataset.device)"
    ) == [fleet.not_joined_device]
    await screenshot(page, "devices-filtered")


async def test_a_failed_device_shows_its_diagnosis_advice_and_timeline(
    page: Page, fleet: Fleet
) -> None:
    route = f"#/devices/{fleet.failed_device}"
    await page.goto(fleet.service.url(f"/api/console{route}"))
    await rendered(page, route)
    detail = api(fleet, f"/api/devices/{fleet.failed_device}")
    box = page.locator("[data-diagnosis-box]")
    assert await box.get_attribute("data-diagnosis-box") == "prerequisite-failure"
    assert await page.text_content("[data-advice]") == detail["diagnosis"]["advice"]
    kinds = await page.locator("tr[data-kind]").evaluate_all(
        "rows => rows.map(r => r.dataset.kind)"
    )
    assert sorted(kinds) == ["bundle", "report"]
    assert "DeviceAuthStatus : SUCCESS" in (await page.text_content("[data-dsregcmd]") or "")
    await screenshot(page, "device-failed")


async def test_discovery_runs_show_the_running_run_progress(page: Page, fleet: Fleet) -> None:
    await page.goto(fleet.service.url("/api/console#/runs"))
    await rendered(page, "#/runs")
    row = page.locator(f'tr[data-run="{fleet.run_id}"]')
    assert await row.get_attribute("data-status") == "running"
    assert await row.locator("progress").get_attribute("value") == "49"
    assert "min left" in (await row.text_content() or "")
    await screenshot(page, "discovery-runs")


async def test_groups_page_lists_discovered_groups_and_the_subscription_state(
    page: Page, fleet: Fleet
) -> None:
    await page.goto(fleet.service.url("/api/console#/groups"))
    await rendered(page, "#/groups")
    shown = await page.locator("[data-group]").count()
    assert shown == len(api(fleet, "/api/groups")["groups"]) == 2
    assert await page.locator("[data-group]", has_text="deleted in Entra ID").count() == 1
    # This host has no GRAPH_NOTIFICATION_URL: the page says notifications are off.
    assert api(fleet, "/api/health")["subscriptions"] == []
    assert await page.locator("[data-no-subscriptions]").count() == 1
    await screenshot(page, "groups")


async def test_profiles_page_lists_profiles_and_explains_a_resolution(
    page: Page, fleet: Fleet
) -> None:
    await page.goto(fleet.service.url("/api/console#/profiles"))
    await rendered(page, "#/profiles")
    listed = api(fleet, "/api/profiles")["profiles"]
    assert await page.locator("[data-profile]").count() == len(listed) == 1
    assert await page.locator("[data-profile='internet-clients']", has_text="INT").count() == 1
    await page.fill("input[name=userId]", PROFILED_USER)
    await page.click("[data-resolve-form] button")
    route = f"#/profiles?userId={PROFILED_USER}"
    await rendered(page, route)
    expected = api(fleet, f"/api/profiles/resolve?userId={PROFILED_USER}")["profile"]
    assert expected == "internet-clients"
    assert await page.locator(f"[data-resolved='{expected}']").count() == 1
    assert await page.locator("[data-resolved]", has_text="CM Internet Clients").count() == 1
    await screenshot(page, "profiles")


async def test_a_refused_token_asks_to_sign_in_again(page: Page, fleet: Fleet) -> None:
    await page.goto(fleet.service.url("/api/console#/overview"))
    await page.evaluate("sessionStorage.setItem('cmboot.console.demoToken', 'not-a-token')")
    await page.reload()
    await page.wait_for_selector("#sign-in-panel:not([hidden])")
    assert "sign in again" in (await page.text_content("#error") or "")
    await screenshot(page, "signed-out")
