"""The local hub's web page: what it shows, what it never shows, and its buttons in a real browser."""
from __future__ import annotations

import shlex
import sys
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd

import localhub
from tests.fixtures.hub import TEST_TOKEN
from tests.fixtures.scenarios import PROJECT_ROOT, make_loop
from tests.fixtures.web import (API_SPACE, DATASET_REPO, MODEL_REPO, RETRAIN_SPACE, SAMPLE_DATA, SERVED_TAG,
                                VERSIONS, start_page_hub)

PAGES = ("/", "/localhub/sections", "/api/localhub/overview")


def overview(hub) -> dict:
    response = httpx.get(f"{hub.url}/api/localhub/overview", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_stage(hub, space_id: str, stages: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (stage := hub.client.space(space_id).state().stage) not in stages:
        assert time.monotonic() < deadline, f"{space_id} still {stage}"
        time.sleep(0.2)
    return stage


# --- what the page shows ----------------------------------------------------------------
def test_model_versions_are_newest_first_with_metrics_and_the_served_tag(page_hub):
    model = next(m for m in overview(page_hub)["models"] if m["id"] == MODEL_REPO)
    assert [v["tag"] for v in model["versions"]] == [tag for tag, *_ in reversed(VERSIONS)]
    served = {v["tag"]: [s["space"] for s in v["served_by"]] for v in model["versions"]}
    assert served == {tag: [API_SPACE] if tag == SERVED_TAG else [] for tag, *_ in VERSIONS}
    middle = next(v for v in model["versions"] if v["tag"] == SERVED_TAG)
    assert (middle["candidate_f1"], middle["deployed_f1"], middle["delta_f1"], middle["delta_f1_ci"],
            middle["outcome"]) == (0.68, 0.61, 0.07, [0.02, 0.12], "promote")
    png = httpx.get(page_hub.url + middle["confusion"]["candidate"], timeout=10)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_a_space_not_pinned_to_a_tag_serves_the_newest(page_hub):
    httpx.request("DELETE", f"{page_hub.url}/api/spaces/{API_SPACE}/variables", json={"key": "MODEL_REVISION"},
                  timeout=10).raise_for_status()
    model = next(m for m in overview(page_hub)["models"] if m["id"] == MODEL_REPO)
    assert [[s["space"] for s in v["served_by"]] for v in model["versions"]] == [[API_SPACE], [], []]


def test_page_renders_each_version_row_with_its_figures(page_hub):
    html = httpx.get(page_hub.url + "/", timeout=10).text
    assert f'data-space="{RETRAIN_SPACE}"' in html and 'data-action="restart"' in html and 'data-action="pause"' in html
    assert html.index('data-tag="v20250103_000000"') < html.index('data-tag="v20250102_000000"')
    row = html[html.index(f'<tr data-tag="{SERVED_TAG}"'):]
    row = row[:row.index("</tr>")]
    assert "0.6800" in row and "0.6100" in row and "+0.0700" in row and "[+0.0200, +0.1200]" in row
    assert f"pinned by {API_SPACE} (NO_APP_FILE)" in row and "promote" in row and "<img" in row
    assert "first deploy" in html  # the oldest version had no deployed model


def test_dataset_versions_count_rows_per_split_and_class(page_hub):
    dataset = next(d for d in overview(page_hub)["datasets"] if d["id"] == DATASET_REPO)
    (version,) = dataset["versions"]
    assert version["tag"] == "v1"
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(SAMPLE_DATA / f"{split}.csv")
        shown = version["splits"][split]
        assert shown["rows"] == len(frame)
        assert shown["classes"]["urgency"] == frame.urgency.value_counts().to_dict()
        assert shown["classes"]["department"] == frame.department.value_counts().to_dict()


def test_dataset_versions_sort_numerically_and_read_parquet_splits(page_hub, tmp_path):
    folder = tmp_path / "v2"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        pd.read_csv(SAMPLE_DATA / f"{split}.csv").head(10).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    for tag in ("v2", "v10"):
        commit = page_hub.client.upload_folder(DATASET_REPO, folder, tag, "dataset")
        page_hub.client.create_tag(DATASET_REPO, tag, commit, "dataset")
    dataset = next(d for d in overview(page_hub)["datasets"] if d["id"] == DATASET_REPO)
    assert [v["tag"] for v in dataset["versions"]] == ["v10", "v2", "v1"]
    train = dataset["versions"][1]["splits"]["train"]
    assert train["file"].endswith(".parquet") and train["rows"] == 10
    assert sum(train["classes"]["urgency"].values()) == 10


def test_space_shows_its_app_times_and_log_tail(page_hub):
    localhub.bind_space(page_hub.url, RETRAIN_SPACE, [sys.executable, "-c", "print('job says hello')"],
                        serves_http=False)
    page_hub.client.space(RETRAIN_SPACE).restart()
    wait_for_stage(page_hub, RETRAIN_SPACE, {"STOPPED"})
    space = next(s for s in overview(page_hub)["spaces"] if s["id"] == RETRAIN_SPACE)
    assert space["stage"] == "STOPPED"
    assert space["command"] == shlex.join([Path(sys.executable).name, "-c", "print('job says hello')"])
    assert space["started_at"] <= space["stopped_at"] and "job says hello" in space["log"]


def test_log_tail_skips_health_probes_and_times_are_utc(page_hub):
    app = ("for i in range(300): print(f'INFO: 127.0.0.1:5000 - \"GET /health HTTP/1.1\" 200 OK')\n"
           "print('INFO: 127.0.0.1:5000 - \"POST /predict HTTP/1.1\" 200 OK')")
    localhub.bind_space(page_hub.url, RETRAIN_SPACE, [sys.executable, "-c", app], serves_http=False)
    page_hub.client.space(RETRAIN_SPACE).restart()
    wait_for_stage(page_hub, RETRAIN_SPACE, {"STOPPED"})
    html = httpx.get(page_hub.url + "/", timeout=10).text
    article = html[html.index(f'<article class="space" data-space="{RETRAIN_SPACE}"'):]
    article = article[:article.index("</article>")]
    log = article[article.index('<pre class="log"'):]
    assert "POST /predict" in log and "GET /health" not in log
    started = article[article.index("<dt>last start</dt>"):]
    assert started.startswith("<dt>last start</dt><dd>20") and " UTC</dd>" in started[:60]


def test_a_model_repo_without_release_tags_is_listed_not_shown_as_an_empty_card(page_hub):
    page_hub.client.ensure_repo("retrainspace/some-base-model")
    html = httpx.get(page_hub.url + "/", timeout=10).text
    assert 'data-repo="retrainspace/some-base-model"' not in html
    assert "without release tags (base models): <code>retrainspace/some-base-model</code>" in html
    assert f'data-repo="{MODEL_REPO}"' in html


# --- what it never shows ------------------------------------------------------------------
def test_secret_values_never_appear_even_when_the_app_prints_them(page_hub):
    secret = f"hf_{uuid.uuid4().hex}"
    space = page_hub.client.space(RETRAIN_SPACE)
    space.set_secret("HF_TOKEN", secret)
    space.set_variable("WANDB_API_KEY", "wandb-key-set-as-a-variable-by-mistake")
    localhub.bind_space(page_hub.url, RETRAIN_SPACE,
                        [sys.executable, "-c", "import os; print('leaked:', os.environ['HF_TOKEN'])"],
                        serves_http=False)
    space.restart()
    wait_for_stage(page_hub, RETRAIN_SPACE, {"STOPPED"})
    for path in PAGES:
        text = httpx.get(page_hub.url + path, timeout=10).text
        assert "HF_TOKEN" in text and "leaked: ***" in text, path  # the name is shown, never the value
        assert secret not in text and "wandb-key-set-as-a-variable" not in text, path


def test_hub_token_never_appears_on_the_page(tmp_path):
    hub = start_page_hub(tmp_path, token=TEST_TOKEN)
    try:
        hub.client.ensure_repo(RETRAIN_SPACE, "space")
        hub.client.space(RETRAIN_SPACE).set_variable("NOTE", f"the token is {TEST_TOKEN}")
        for path in PAGES:
            text = httpx.get(hub.url + path, timeout=10).text
            assert TEST_TOKEN not in text and "the token is ***" in text, path
        assert 'data-token-required="true"' in httpx.get(hub.url + "/", timeout=10).text
    finally:
        hub.server.stop()


def test_everything_shown_is_escaped(page_hub):
    attack = '<img src=x onerror="alert(1)">'
    page_hub.client.space(RETRAIN_SPACE).set_variable("NOTE", attack)
    localhub.bind_space(page_hub.url, RETRAIN_SPACE, [sys.executable, "-c", f"print({attack!r})"],
                        serves_http=False)
    page_hub.client.space(RETRAIN_SPACE).restart()
    wait_for_stage(page_hub, RETRAIN_SPACE, {"STOPPED"})
    for path in PAGES[:2]:
        html = httpx.get(page_hub.url + path, timeout=10).text
        assert attack not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html, path


# --- in a browser -----------------------------------------------------------------------
def stage_on_page(driver, space_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'article[data-space="{space_id}"] [data-role="stage"]').text


def click(driver, space_id: str, action: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'article[data-space="{space_id}"] button[data-action="{action}"]').click()


def wait_on_page(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page swaps its sections every 2 s: elements go stale, so each check finds them again
    return WebDriverWait(driver, timeout, poll_frequency=0.3,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        condition, message=what)


def message(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "message").text


def test_restart_without_the_token_is_refused_with_a_visible_message(token_page_hub, browser):
    from selenium.webdriver.common.by import By

    browser.get(token_page_hub.url + "/")
    before = stage_on_page(browser, RETRAIN_SPACE)
    click(browser, RETRAIN_SPACE, "restart")
    wait_on_page(browser, lambda d: "requires a token" in message(d), 5, "no refusal shown")
    browser.find_element(By.ID, "token").send_keys("hf_wrong_token")
    click(browser, RETRAIN_SPACE, "restart")
    wait_on_page(browser, lambda d: "401" in message(d), 5, "the hub's refusal is not shown")
    assert token_page_hub.client.space(RETRAIN_SPACE).state().stage == before != "RUNNING"

    token_field = browser.find_element(By.ID, "token")
    token_field.clear()
    token_field.send_keys(TEST_TOKEN)
    click(browser, RETRAIN_SPACE, "restart")
    wait_on_page(browser, lambda d: stage_on_page(d, RETRAIN_SPACE) == "RUNNING", 10, "restart with the token")
    click(browser, RETRAIN_SPACE, "pause")
    wait_on_page(browser, lambda d: stage_on_page(d, RETRAIN_SPACE) == "PAUSED", 20, "pause with the token")
    assert token_page_hub.client.space(RETRAIN_SPACE).state().stage == "PAUSED"
    assert TEST_TOKEN not in browser.page_source


def test_restart_button_runs_the_retrain_job_and_shows_the_new_version(tmp_path, tiny_model_dir, browser,
                                                                       artifacts_dir):
    from types import SimpleNamespace

    from selenium.webdriver.common.by import By

    server = localhub.start_background(tmp_path / "hub-data")
    try:
        loop = make_loop(SimpleNamespace(url=server.url, token=None), tiny_model_dir, tmp_path)
        loop.start_inference_space(serving=False)  # no model yet: it runs, with nothing to serve
        localhub.bind_space(server.url, loop.retrain_space, [sys.executable, "train_model.py"],
                            cwd=PROJECT_ROOT, serves_http=False)
        retrain = loop.client.space(loop.retrain_space)
        for key, value in {**loop.env, "MAX_TRAIN_SAMPLES": "64"}.items():
            if key not in ("HF_ENDPOINT", "RETRAIN_SPACE_ID"):  # the Space gets both from the hub
                retrain.set_variable(key, value)

        browser.get(server.url + "/")
        assert not loop.tags()
        click(browser, loop.retrain_space, "restart")
        wait_on_page(browser, lambda d: stage_on_page(d, loop.retrain_space) == "RUNNING", 20, "never RUNNING")
        wait_on_page(browser, lambda d: stage_on_page(d, loop.retrain_space) == "PAUSED", 400,
                     "the job did not pause its Space")
        (tag,) = loop.tags()
        row = f'article[data-repo="{loop.model_repo}"] tr[data-tag="{tag}"]'
        wait_on_page(browser, lambda d: f"serves: {loop.inference_space}" in d.find_element(By.CSS_SELECTOR, row).text,
                     90, f"{tag} is not shown as served")
        candidate_f1 = float(browser.find_element(By.CSS_SELECTOR, f'{row} [data-role="candidate-f1"]').text)
        assert 0 <= candidate_f1 <= 1
        assert "first deploy" in browser.find_element(By.CSS_SELECTOR, f'{row} [data-role="delta-f1"]').text
        assert "promote" in browser.find_element(By.CSS_SELECTOR, f'{row} [data-role="decision"]').text
        assert loop.summary()["outcome"] == "promoted"
        screenshot = artifacts_dir / "web_page_after_retrain.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
    finally:
        server.stop()
