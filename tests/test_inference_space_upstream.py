"""Upstream Sambodhan's clients against our inference Space (issue 14 item 4): their backend
posts {"text": str} to /predict_urgency and /predict (department) and reads label and confidence;
their retrain job posts to API_ENDPOINT=.../predict; their docs send {"text": [..]} for a batch
and read a list; GET / answers message, status and model_version."""
from __future__ import annotations

import httpx
import pytest

from configs import LABEL_SETS
from inference_space.app import create_app
from inference_space.settings import load_settings
from tests.fixtures.space import build_classifier, serve, wait_for_status
from text_cleaning import clean, cleaning_from_env

V1 = "v20260101_000000"
NOISY = "Paani aayena <b>3 din</b> dekhi\nhttps://ward4.gov.np/notice?id=7 kripaya   hernus"


@pytest.fixture
def urgency_space(space_env, space_hub, publish_space_version):
    publish_space_version(space_hub, V1)
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert wait_for_status(client)["status"] == "ok"
        yield client


def test_their_backend_urgency_call_gets_a_label_not_a_404(urgency_space):
    # as src/backend/app/routers/complaints.py predict_urgency: any failure there becomes NORMAL
    response = urgency_space.post("/predict_urgency", json={"text": "Khanepani pipe futeko chha"})
    assert response.status_code == 200
    result = response.json()
    assert result["label"].upper() in {"NORMAL", "URGENT", "HIGHLY URGENT"} and 0 < result["confidence"] <= 1
    assert result == urgency_space.post("/predict", json={"text": "Khanepani pipe futeko chha"}).json()
    assert urgency_space.post("/predict_department", json={"text": "x"}).status_code == 404  # not this LABEL


def test_a_list_of_texts_gets_a_list_of_predictions_in_order(urgency_space):
    texts = ["bato bigriyo", "school ma shikshak chhaina", "police le ujuri linna"]
    listed = urgency_space.post("/predict", json={"text": texts})
    assert listed.status_code == 200 and isinstance(listed.json(), list)
    singles = [urgency_space.post("/predict", json={"text": t}).json() for t in texts]
    assert [p["label"] for p in listed.json()] == [p["label"] for p in singles]
    for got, single in zip(listed.json(), singles):
        assert got["scores"] == pytest.approx(single["scores"], abs=1e-4)
    assert isinstance(urgency_space.post("/predict_urgency", json={"text": texts[:1]}).json(), list)


@pytest.mark.parametrize("body,message", [
    ({"text": []}, "text: the list is empty"),
    ({"text": ["ok", " "]}, "text[1]: the text is empty"),
    ({"text": ["ok"] * 65}, "MAX_BATCH=64"),
    ({"text": 42}, "text: Input should be a valid string"),
    ({"text": ["ok", 3]}, "text.1: Input should be a valid string"),
    ({"text": "<p></p> https://x.np"}, "nothing is left once TEXT_CLEANING=sambodhan removed"),
])
def test_bad_list_input_is_422_naming_the_item(urgency_space, body, message):
    response = urgency_space.post("/predict", json=body)
    assert response.status_code == 422 and message in response.json()["detail"]


def test_root_answers_what_their_clients_read_and_our_version(urgency_space):
    root = urgency_space.get("/").json()
    assert root["status"] == "Active" and root["model_version"] == V1 and "running" in root["message"]
    assert root["health"]["revision"] == V1


def test_their_department_call_on_a_department_space(space_env, space_hub, tiny_model_dir, tmp_path, monkeypatch,
                                                     space_model_repo):
    folder = build_classifier(tiny_model_dir, tmp_path / "department-model", label="department")
    space_hub.ensure_repo(space_model_repo)
    space_hub.create_tag(space_model_repo, V1, space_hub.upload_folder(space_model_repo, folder, "department"))
    monkeypatch.setenv("LABEL", "department")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_for_status(client)
        # as their predict_department: an extra field, and the label read as the department name
        answer = client.post("/predict", json={"text": "Ward office ma sifaris painna", "return_probabilities": False})
        named = client.post("/predict_department", json={"text": "Ward office ma sifaris painna"})
    assert answer.status_code == 200 and answer.json()["label"] in LABEL_SETS["department"]
    assert named.json() == answer.json()


def test_serving_cleans_texts_the_sambodhan_way_unless_turned_off(space_env, space_hub, publish_space_version,
                                                                 monkeypatch):
    publish_space_version(space_hub, V1)
    answers = {}
    for mode in ("sambodhan", "none"):
        monkeypatch.setenv("TEXT_CLEANING", mode)
        with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=60) as client:
            wait_for_status(client)
            answers[mode] = [client.post("/predict", json={"text": t}).json()["scores"]
                             for t in (NOISY, clean(NOISY))]
    noisy, cleaned = answers["sambodhan"]
    assert noisy == cleaned  # the model saw the cleaned text
    noisy_raw, cleaned_raw = answers["none"]
    assert noisy_raw != cleaned_raw and cleaned_raw == cleaned


def test_clean_drops_urls_and_tags_and_collapses_whitespace(monkeypatch):
    assert clean(NOISY) == "Paani aayena 3 din dekhi kripaya hernus"
    assert clean("see www.example.org/x,\tthen\r\n<br/>call") == "see then call"
    assert clean("a<b\nc>d") == "a<b c>d"  # a tag never spans lines, as upstream's
    assert clean(NOISY, "none") == NOISY
    monkeypatch.setenv("TEXT_CLEANING", "strip")
    with pytest.raises(ValueError, match="TEXT_CLEANING='strip'"):
        cleaning_from_env()
    monkeypatch.delenv("TEXT_CLEANING")
    assert cleaning_from_env() == "sambodhan"
