import pytest

from deployed_api import DeployedAPIError, DeployedModelClient
from tests.fixtures.servers import free_port

TEXTS = [f"complaint number {i}" for i in range(70)]


def client(url, **kwargs):
    return DeployedModelClient(url, timeout=kwargs.pop("timeout", 5), retries=kwargs.pop("retries", 1),
                               backoff=0.01, batch_size=32, concurrency=4, **kwargs)


def test_batched_scoring_keeps_order_and_uses_few_requests(fake_deployed):
    url, faults = fake_deployed
    faults.label_for = {TEXTS[5]: "URGENT", TEXTS[69]: "HIGHLY URGENT"}
    scores = client(url).predict_labels(TEXTS)
    assert scores.mode == "batch" and not scores.failures
    assert scores.labels[5] == "URGENT" and scores.labels[69] == "HIGHLY URGENT" and scores.labels[0] == "NORMAL"
    assert faults.calls["batch"] == 3  # 70 texts in chunks of 32


def test_falls_back_to_single_requests_without_batch_endpoint(fake_deployed):
    url, faults = fake_deployed
    faults.no_batch = True
    scores = client(url).predict_labels(TEXTS[:10])
    assert scores.mode == "single" and len(scores.labels) == 10 and faults.calls["single"] == 10


def test_failed_texts_are_reported_by_index_not_dropped(fake_deployed):
    url, faults = fake_deployed
    faults.fail_texts = {TEXTS[3], TEXTS[40]}
    scores = client(url).predict_labels(TEXTS)
    assert set(scores.failures) == {3, 40}
    assert scores.labels[3] is None and scores.labels[4] == "NORMAL"
    assert len(scores.labels) == len(TEXTS)


@pytest.mark.parametrize("fault", ["status", "malformed", "slow"])
def test_every_sample_fails_on_a_broken_api(fake_deployed, fault):
    url, faults = fake_deployed
    if fault == "status":
        faults.status = 503
    elif fault == "malformed":
        faults.malformed = True
    else:
        faults.delay = 1.0
    scores = client(url, timeout=0.3).predict_labels(TEXTS[:4])
    assert set(scores.failures) == {0, 1, 2, 3}


def test_unreachable_api_raises_with_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DeployedAPIError, match="127.0.0.1"):
        client(url).health()
    with pytest.raises(DeployedAPIError, match="not ready"):
        client(url).wait_until_ready(timeout=0.2, poll=0.05)


def test_sambodhan_shaped_predict_takes_lists_one_request_per_chunk(sambodhan_space):
    scores = client(sambodhan_space, label="urgency").predict_labels(TEXTS)
    assert scores.mode == "list" and not scores.failures and set(scores.labels) == {"HIGHLY URGENT"}
    assert len(scores.labels) == len(TEXTS)
    one = client(f"{sambodhan_space}/predict_urgency").predict_labels(TEXTS[:1])  # one text: an object back
    assert one.mode == "list" and one.labels == ["HIGHLY URGENT"]
