"""The Airflow UI in a real browser: headless Chromium (Debian's package) driven by Playwright,
against `make airflow` on a stack of its own. What a user does by hand: log in, read each DAG's
docs, trigger `retail_data_generator` from the trigger form with changed Params, watch the run
succeed, start a three-day backfill of `nightly_file_ingestion` from the same dialog.

What the browser shows is checked in the browser; what the runs wrote is checked in S3 and through
the REST API. The screenshots land in docs/screenshots/ (docs/local.md shows them), so a run of
`make test-ui` refreshes them.

Skips, saying why, only where no Chromium can be found or installed, and never when CI=true.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from conveyor_local import browser
from conveyor_local.airflow_api import scratch_airflow

pytestmark = pytest.mark.ui

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
DAG_IDS = sorted(p.stem for p in (ROOT / "dags").glob("*.py"))
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not browser.find_chromium():
        message = "no Chromium for the UI tests (`python -m conveyor_local.browser` installs Debian's)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true, so this fails instead of skipping")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = browser.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def airflow():
    with scratch_airflow() as scratch:
        yield scratch


@pytest.fixture
def page(chromium, airflow):
    """A fresh browser context, logged in through the login form as the admin user."""
    context = chromium.new_context(viewport=VIEWPORT, base_url=airflow.api.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/")
    # The UI sends a new visitor to the login form, through more than one redirect: wait for the
    # form itself (a locator outlives a superseded navigation; wait_for_url can see it aborted).
    page.get_by_label("Username").wait_for()
    assert "/auth/login" in page.url
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow.api.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Welcome").wait_for()
    yield page
    context.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


def doc_title(doc_md: str) -> str:
    """The first Markdown heading of a DAG's doc_md, without its #s."""
    return next(line.lstrip("#").strip() for line in doc_md.splitlines() if line.startswith("#"))


def test_login_with_a_wrong_password_is_refused(chromium, airflow):
    context = chromium.new_context(viewport=VIEWPORT, base_url=airflow.api.url)
    page = context.new_page()
    page.goto("/")
    page.get_by_label("Username").wait_for()
    assert "/auth/login" in page.url
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_timeout(1500)
    assert "/auth/login" in page.url
    assert page.get_by_role("heading", name="Welcome").count() == 0
    context.close()


def test_each_dag_lists_and_its_docs_render_as_markdown(page, airflow):
    page.goto("/dags")
    for dag_id in DAG_IDS:
        page.get_by_role("link", name=dag_id, exact=True).first.wait_for()
    for dag_id in DAG_IDS:
        title = doc_title(airflow.api.dag_details(dag_id)["doc_md"])
        page.goto(f"/dags/{dag_id}")
        page.get_by_role("button", name="Dag Docs").click()
        dialog = page.get_by_role("dialog")
        # Rendered Markdown: the doc's first heading is a heading, and no raw "#" is left.
        dialog.get_by_role("heading", name=title, exact=True).wait_for()
        assert "###" not in dialog.inner_text(), f"{dag_id}: docs not rendered as Markdown"
        assert dialog.locator("p").count() >= 1, f"{dag_id}: docs have no paragraphs"
        if dag_id == "totesys_etl":
            shot(page, "dag-docs")
        dialog.get_by_role("button", name="Close").click()


def test_trigger_retail_data_generator_from_the_form_with_changed_params(page, airflow):
    params = {"users": 7, "transactions": 31, "seed": 11, "format": "json"}
    page.goto("/dags/retail_data_generator")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_role("spinbutton", name="Number of users").fill(str(params["users"]))
    form.get_by_role("spinbutton", name="Number of transactions").fill(str(params["transactions"]))
    form.get_by_role("spinbutton", name="Random seed").fill(str(params["seed"]))
    form.get_by_role("combobox", name="File format").click()
    page.get_by_role("option", name=params["format"], exact=True).click()
    shot(page, "trigger-form")
    form.get_by_role("button", name="Trigger", exact=True).click()

    # The UI moves to the new run; its task turns Success there without a reload.
    page.wait_for_url(re.compile(r"/dags/retail_data_generator/runs/manual__"))
    run_id = unquote(page.url.rsplit("/runs/", 1)[1].strip("/"))
    row = page.get_by_role("row", name=re.compile(r"^write_inbound_files Success "))
    try:
        row.wait_for(timeout=120_000)
    except Exception:
        [run] = [r for r in airflow.api.runs("retail_data_generator") if r["dag_run_id"] == run_id]
        pytest.fail(f"no Success in the UI: {airflow.failure_detail('retail_data_generator', run)}")
    shot(page, "grid-triggered-run")

    [run] = [r for r in airflow.api.runs("retail_data_generator") if r["dag_run_id"] == run_id]
    assert run["state"] == "success" and run["conf"] == params, run
    users = [k for k in airflow.keys("inbound", "user/") if k.endswith("-seed11.json")]
    transactions = [k for k in airflow.keys("inbound", "transactions/") if k.endswith("-seed11.json")]
    assert len(users) == 1 and len(transactions) == 1, airflow.keys("inbound")
    body = airflow.s3.get_object(Bucket=airflow.bucket("inbound"), Key=users[0])["Body"].read()
    assert [json.loads(line)["user_id"] for line in body.decode().splitlines()] != []
    assert len(body.decode().splitlines()) == params["users"]
    body = airflow.s3.get_object(Bucket=airflow.bucket("inbound"), Key=transactions[0])["Body"].read()
    assert len(body.decode().splitlines()) == params["transactions"]


def test_three_day_backfill_of_nightly_file_ingestion_from_the_ui(page, airflow):
    dag_id = "nightly_file_ingestion"
    page.goto(f"/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_role("radio", name="Backfill").check(force=True)  # the radio's input is hidden
    form.get_by_role("textbox", name="From").fill("2024-03-02T20:00")
    form.get_by_role("textbox", name="To").fill("2024-03-04T20:00")
    form.get_by_role("spinbutton").fill("3")  # Max Active Runs
    form.get_by_text("3 runs will be triggered.").wait_for()
    shot(page, "backfill-form")
    form.get_by_role("button", name="Run Backfill").click()
    page.get_by_role("status").filter(has_text="Backfill generated").wait_for()

    # The scheduler runs it; the Backfills tab shows it finished.
    [backfill] = airflow.api.backfills(dag_id)
    runs = airflow.api.wait_for_runs(dag_id, lambda r: r["run_type"] == "backfill", count=3, timeout=240)
    assert [r["state"] for r in runs] == ["success"] * 3, [airflow.failure_detail(dag_id, r) for r in runs]
    page.goto(f"/dags/{dag_id}/backfills")
    completed = None
    for _ in range(30):
        [backfill] = airflow.api.backfills(dag_id)
        if completed := backfill["completed_at"]:
            break
        page.wait_for_timeout(1000)
    assert completed, f"the backfill never completed: {backfill}"
    page.reload()
    row = page.get_by_role("row", name=re.compile(r"^2024-03-02 20:00:00 2024-03-04 20:00:00 Missing Runs"))
    row.get_by_text(completed[:19].replace("T", " ")).wait_for()
    shot(page, "backfill-finished")

    assert backfill["max_active_runs"] == 3 and backfill["from_date"].startswith("2024-03-02T20:00")
    assert sorted(r["data_interval_end"][:10] for r in runs) == ["2024-03-03", "2024-03-04", "2024-03-05"]
    landed = airflow.keys("raw", "landing/movies/")
    for day in ("03", "04", "05"):
        assert f"landing/movies/year=2024/month=03/day={day}/movies.csv" in landed, landed
