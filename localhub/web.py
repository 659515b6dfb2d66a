"""The local hub's web page: Spaces with Restart/Pause, model versions with their metrics, dataset
versions, and the feedback review queue with a button per label (localhub/review.py).

    GET /                       the page, server-rendered (the JS and CSS live in localhub/web/)
    GET /localhub/sections      the same sections as an HTML fragment; the page polls it every 2 s
    GET /api/localhub/overview  the data behind the sections, as JSON

The buttons POST to /api/spaces/{id}/restart|pause, the endpoints HfApi.restart_space and
pause_space call, so a hub with a token refuses them without it like any other write. Every
value is masked first (secret values, the hub token, secret-named variables, URL passwords), then
HTML-escaped while rendering: masking rendered HTML could cut its markup apart. A malformed
metadata.json or data file shows as that version's error; the rest of the page still renders.
"""
from __future__ import annotations

import csv
import html
import json
import re
import shlex
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from configs import mask_url
from load_dataset import SPLITS, split_of

from .review import ReviewSource, render_review, review_router, review_view
from .security import MASK, scrub_data
from .spaces import SpaceRuntimes
from .storage import HubHTTPError, Repo, Store

ASSETS = Path(__file__).with_name("web")
LOG_LINES = 40
PROBE_PATHS = ("/health", "/metrics")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|_KEY$", re.IGNORECASE)
MODEL_ID_VARIABLE, REVISION_VARIABLE = "MODEL_ID", "MODEL_REVISION"  # the inference Space's settings


# --- reading repos -----------------------------------------------------------------------
def natural_key(tag: str) -> list:
    """v10 after v9; v20250101_000000_1 (a clash suffix) after v20250101_000000."""
    return [(1, int(part), "") if part.isdigit() else (0, 0, part) for part in re.split(r"(\d+)", tag)]


def version_tags(repo: Repo) -> list[tuple[str, str]]:
    """(tag, commit) of every v* tag, newest first."""
    tags = {name: info["commit"] for name, info in repo.refs()["tags"].items() if name.startswith("v")}
    return sorted(tags.items(), key=lambda item: natural_key(item[0]), reverse=True)


@lru_cache(maxsize=256)
def read_json_blob(path: Path) -> dict | None:
    # blobs are content-addressed and never rewritten: the path is a safe cache key
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=256)
def count_classes(path: Path) -> dict:
    """rows and {column: {class: rows}} for every label column (all but `text`) of one split file."""
    with open(path, "rb") as file:
        is_parquet = file.read(4) == b"PAR1"  # blobs are named by hash: the content says the format
    if is_parquet:
        import pandas as pd

        rows = pd.read_parquet(path).astype(str).to_dict("records")
    else:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as file:
            rows = list(csv.DictReader(file))
    classes: dict[str, dict[str, int]] = {}
    for row in rows:
        for column, value in row.items():
            if column and column != "text":
                counts = classes.setdefault(column, {})
                counts[value] = counts.get(value, 0) + 1
    return {"rows": len(rows), "classes": {c: dict(sorted(n.items())) for c, n in classes.items()}}


def file_url(repo: Repo, commit: str, path: str) -> str:
    prefix = {"model": "", "dataset": "/datasets", "space": "/spaces"}[repo.repo_type]
    return f"{prefix}/{repo.repo_id}/resolve/{commit}/{path}"


# --- what the page shows -----------------------------------------------------------------
def shown_command(app: dict | None) -> str | None:
    if not app:
        return None
    command = app["command"]
    return shlex.join([Path(command[0]).name, *command[1:]])  # the interpreter's folder is noise


def shown_variable(key: str, value) -> str:
    if SECRET_NAME.search(key):
        return MASK
    try:
        return mask_url(str(value))  # postgresql://user:pw@host/db shows as user:***@host
    except ValueError:  # not a URL after all (e.g. an unbalanced '[')
        return str(value)


def space_view(repo: Repo, spaces: SpaceRuntimes) -> dict:
    runtime, settings = spaces.runtime(repo), spaces.settings(repo)
    return {
        "id": repo.repo_id,
        "stage": runtime["stage"],
        "command": shown_command(settings["app"]),
        "url": runtime["host"],
        "started_at": settings.get("started_at"),
        "stopped_at": settings.get("stopped_at"),
        "variables": {key: shown_variable(key, item.get("value"))
                      for key, item in sorted(settings["variables"].items())},
        "secrets": spaces.secret_names(repo),  # names only, as on the Hub
        "log": [line for line in spaces.logs(repo, LOG_LINES * 10) if not is_probe_line(line)][-LOG_LINES:],
    }


def is_probe_line(line: str) -> bool:
    """An access-log line of a health or metrics probe: the job polls /health every second or two."""
    return any(f'"GET {path}' in line for path in PROBE_PATHS)


def utc(timestamp: str | None) -> str | None:
    """2026-01-02T03:04:05.678Z as '2026-01-02 03:04:05 UTC': every time on the page is UTC."""
    return f"{timestamp[:10]} {timestamp[11:19]} UTC" if timestamp and len(timestamp) >= 19 else timestamp


def served_versions(space_views: list[dict]) -> dict[str, list[dict]]:
    """model repo -> the Spaces serving it, with the tag each is pinned to (None: it serves the newest)."""
    served: dict[str, list[dict]] = {}
    for space in space_views:
        model = space["variables"].get(MODEL_ID_VARIABLE)
        if model:
            served.setdefault(model, []).append({"space": space["id"], "stage": space["stage"],
                                                 "tag": space["variables"].get(REVISION_VARIABLE)})
    return served


def model_version(repo: Repo, tag: str, commit: str, served_by: list[dict]) -> dict:
    _, files = repo.files(commit)
    metadata = read_json_blob(repo.blob_path(files["metadata.json"].sha256)) if "metadata.json" in files else None
    version = {"tag": tag, "commit": commit, "served_by": served_by, "has_metadata": metadata is not None,
               "confusion": {name.removeprefix("confusion_").removesuffix(".png"): file_url(repo, commit, name)
                             for name in sorted(files) if re.fullmatch(r"confusion_\w+\.png", name)}}
    if metadata is not None:
        comparison, decision, dataset = (obj(metadata, key) for key in ("comparison", "decision", "dataset"))
        ci = comparison.get("delta_f1_ci")
        version.update(
            candidate_f1=number(obj(comparison, "candidate").get("macro_f1")),
            deployed_f1=number(obj(comparison, "deployed").get("macro_f1")),
            delta_f1=number(comparison.get("delta_f1")),
            delta_f1_ci=ci if isinstance(ci, list) and len(ci) == 2 and all(number(c) is not None for c in ci) else None,
            n_samples=comparison.get("n_samples"), outcome=decision.get("outcome"), rule=decision.get("rule"),
            reasons=[str(r) for r in decision.get("reasons") or [] if r] if isinstance(decision.get("reasons"), list) else [],
            dataset=f"{dataset.get('repo')}@{dataset.get('revision')}" if dataset.get("repo") else None)
    return version


def obj(data, key: str) -> dict:
    """data[key] when both are JSON objects, else {}: metadata.json is written by other tools."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def guarded(read_version, repo: Repo, tag: str, commit: str, *args) -> dict:
    """One version's view, or its error: one malformed file must not take the page down."""
    try:
        return read_version(repo, tag, commit, *args)
    except Exception as error:  # noqa: BLE001 - files of any shape come from any uploader
        return {"tag": tag, "commit": commit, "error": f"cannot read this version: {type(error).__name__}: {error}"}


def model_view(repo: Repo, served: list[dict]) -> dict:
    tags = version_tags(repo)
    newest = tags[0][0] if tags else None
    served_by = {tag: [{"space": s["space"], "stage": s["stage"]} for s in served if (s["tag"] or newest) == tag]
                 for tag, _ in tags}
    return {"id": repo.repo_id,
            "versions": [guarded(model_version, repo, tag, commit, served_by[tag]) for tag, commit in tags]}


def dataset_version(repo: Repo, tag: str, commit: str) -> dict:
    _, files = repo.files(commit)
    splits = {}
    for path in sorted(files):
        split = split_of(path)
        if split and split not in splits:  # one file per split is the norm; more are shown by the job's checks
            splits[split] = {"file": path, **count_classes(repo.blob_path(files[path].sha256))}
    reports = {path: file_url(repo, commit, path) for path in sorted(files) if path.endswith(".json")}
    return {"tag": tag, "commit": commit, "splits": {s: splits[s] for s in SPLITS if s in splits}, "reports": reports}


def dataset_view(repo: Repo) -> dict:
    return {"id": repo.repo_id,
            "versions": [guarded(dataset_version, repo, tag, commit) for tag, commit in version_tags(repo)]}


def existing(store: Store, repo_type: str) -> list[Repo]:
    repos = []
    for repo_id in store.list(repo_type):
        try:
            repos.append(store.get(repo_type, repo_id))
        except HubHTTPError:
            pass  # deleted between listing and reading
    return repos


def public(store: Store, repo_type: str) -> list[Repo]:
    """The page is read without a token: it shows no private repo."""
    return [repo for repo in existing(store, repo_type) if not repo.private]


def overview(store: Store, spaces: SpaceRuntimes, reviews: ReviewSource | None = None) -> dict:
    space_views = [space_view(repo, spaces) for repo in public(store, "space")]
    served = served_versions(space_views)
    return {
        "spaces": space_views,
        "models": [model_view(repo, served.get(repo.repo_id, [])) for repo in public(store, "model")],
        "datasets": [dataset_view(repo) for repo in public(store, "dataset")],
        "review": review_view(reviews) if reviews else None,
    }


# --- HTML --------------------------------------------------------------------------------
def e(value) -> str:
    return html.escape("" if value is None else str(value))


def f1(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def render_space(space: dict) -> str:
    url = space["url"] if (space["url"] or "").startswith(("http://", "https://")) else None
    variables = "".join(f"<li><code>{e(k)}</code> = <code>{e(v)}</code></li>" for k, v in space["variables"].items())
    secrets = ", ".join(f"<code>{e(name)}</code>" for name in space["secrets"]) or "none"
    return f"""
<article class="space" data-space="{e(space['id'])}">
  <h3>{e(space['id'])} <span class="stage stage-{e(space['stage'])}" data-role="stage">{e(space['stage'])}</span></h3>
  <p class="actions">
    <button type="button" data-action="restart" data-space="{e(space['id'])}">Restart</button>
    <button type="button" data-action="pause" data-space="{e(space['id'])}">Pause</button>
  </p>
  <dl>
    <dt>app</dt><dd><code>{e(space['command'] or 'not bound')}</code></dd>
    <dt>URL</dt><dd>{f'<a href="{e(url)}">{e(url)}</a>' if url else '–'}</dd>
    <dt>last start</dt><dd>{e(utc(space['started_at']) or '–')}</dd>
    <dt>last stop</dt><dd>{e(utc(space['stopped_at']) or '–')}</dd>
    <dt>secrets</dt><dd>{secrets}</dd>
  </dl>
  <details><summary>variables ({len(space['variables'])})</summary><ul>{variables}</ul></details>
  <pre class="log" data-role="log">{e(chr(10).join(space['log'])) or '(no log yet)'}</pre>
</article>"""


def render_delta(version: dict) -> str:
    if version.get("delta_f1") is None:
        return "first deploy" if version.get("deployed_f1") is None else "–"
    ci = version.get("delta_f1_ci")
    ci_text = f" <small>[{ci[0]:+.4f}, {ci[1]:+.4f}]</small>" if ci else ""
    return f"{version['delta_f1']:+.4f}{ci_text}"


def render_served(served: dict) -> str:
    if served["stage"] == "RUNNING":
        return f'<span class="served">serves: {e(served["space"])}</span>'
    return f'<span class="served muted">pinned by {e(served["space"])} ({e(served["stage"])})</span>'


def render_error_row(version: dict, columns: int) -> str:
    return (f'<tr data-tag="{e(version["tag"])}"><td><code>{e(version["tag"])}</code></td>'
            f'<td colspan="{columns}" class="error" data-role="error">{e(version["error"])}</td></tr>')


def render_model_version(version: dict) -> str:
    if "error" in version:
        return render_error_row(version, 6)
    served = "".join(render_served(s) for s in version["served_by"])
    images = "".join(f'<figure><a href="{e(url)}"><img src="{e(url)}" alt="confusion matrix {e(name)}" loading="lazy">'
                     f"</a><figcaption>{e(name)}</figcaption></figure>" for name, url in version["confusion"].items())
    if not version["has_metadata"]:
        return (f'<tr data-tag="{e(version["tag"])}"><td><code>{e(version["tag"])}</code>{served}</td>'
                f'<td colspan="6" class="muted">no metadata.json</td></tr>')
    reasons = "; ".join(version["reasons"])
    return f"""
<tr data-tag="{e(version['tag'])}">
  <td><code>{e(version['tag'])}</code>{served}</td>
  <td data-role="candidate-f1">{f1(version['candidate_f1'])}</td>
  <td data-role="deployed-f1">{f1(version['deployed_f1'])}</td>
  <td data-role="delta-f1">{render_delta(version)}</td>
  <td>{e(version['n_samples'])}</td>
  <td data-role="decision"><strong>{e(version['outcome'])}</strong> <small title="{e(reasons)}">{e(version['rule'])}</small>
      <br><small class="muted">{e(version['dataset'])}</small></td>
  <td class="confusion">{images}</td>
</tr>"""


def render_model(model: dict) -> str:
    rows = "".join(render_model_version(v) for v in model["versions"])
    body = (f"<table><thead><tr><th>tag</th><th>candidate macro-F1</th><th>deployed macro-F1</th>"
            f"<th>ΔF1 [95% CI]</th><th>samples</th><th>decision</th><th>confusion</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>") if rows else '<p class="muted">no version tags</p>'
    return f'<article class="model" data-repo="{e(model["id"])}"><h3>{e(model["id"])}</h3>{body}</article>'


def render_counts(split: dict) -> str:
    return "".join(f"<div><small>{e(column)}:</small> " + ", ".join(f"{e(name)} {count}" for name, count in counts.items())
                   + "</div>" for column, counts in split["classes"].items())


def render_dataset(dataset: dict) -> str:
    rows = []
    for version in dataset["versions"]:
        if "error" in version:
            rows.append(render_error_row(version, len(SPLITS) + 1))
            continue
        cells = "".join(f'<td data-split="{e(name)}"><strong>{split["rows"]}</strong> rows{render_counts(split)}</td>'
                        if (split := version["splits"].get(name)) else "<td>–</td>" for name in SPLITS)
        reports = " ".join(f'<a href="{e(url)}">{e(path)}</a>' for path, url in version["reports"].items())
        rows.append(f'<tr data-tag="{e(version["tag"])}"><td><code>{e(version["tag"])}</code></td>{cells}'
                    f"<td>{reports or '–'}</td></tr>")
    body = (f"<table><thead><tr><th>tag</th>{''.join(f'<th>{s}</th>' for s in SPLITS)}<th>reports</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>") if rows else '<p class="muted">no version tags</p>'
    return f'<article class="dataset" data-repo="{e(dataset["id"])}"><h3>{e(dataset["id"])}</h3>{body}</article>'


def render_sections(data: dict) -> str:
    def section(name: str, title: str, items: list[str]) -> str:
        return f'<section id="{name}"><h2>{title}</h2>{"".join(items) or "<p class=muted>none</p>"}</section>'

    released = [m for m in data["models"] if m["versions"]]
    others = [m["id"] for m in data["models"] if not m["versions"]]
    other_line = (f'<p class="muted">other model repos, without release tags (base models): '
                  f'{", ".join(f"<code>{e(repo_id)}</code>" for repo_id in others)}</p>') if others else ""
    return (section("spaces", "Spaces", [render_space(s) for s in data["spaces"]])
            + section("models", "Model versions", [render_model(m) for m in released] + [other_line])
            + section("datasets", "Dataset versions", [render_dataset(d) for d in data["datasets"]])
            + section("review", "Review queue", [render_review(data.get("review"), e)]))


def render_page(data: dict, token_required: bool) -> str:
    token_field = ('<label>Token <input id="token" type="password" autocomplete="off" '
                   'placeholder="the hub token (kept in this tab only)"></label>') if token_required else \
        '<span class="muted">this hub needs no token</span>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>local hub</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{(ASSETS / "page.css").read_text()}</style></head>
<body data-token-required="{'true' if token_required else 'false'}">
<header><h1>local hub</h1>{token_field}<span id="updated" class="muted"></span></header>
<p id="message" role="status" aria-live="polite"></p>
<main id="sections">{render_sections(data)}</main>
<script>{(ASSETS / "page.js").read_text()}</script>
</body></html>"""


# --- routes ------------------------------------------------------------------------------
def web_router(store: Store, spaces: SpaceRuntimes, token: str | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    reviews = ReviewSource()
    router.include_router(review_router(reviews))

    def shown() -> dict:
        """The overview with every secret masked, before anything renders it."""
        return scrub_data(overview(store, spaces, reviews), [*spaces.secret_values(), *([token] if token else [])])

    @router.get("/")
    def page():
        return HTMLResponse(render_page(shown(), token is not None), headers={"Cache-Control": "no-store"})

    @router.get("/localhub/sections")
    def sections():
        return HTMLResponse(render_sections(shown()), headers={"Cache-Control": "no-store"})

    @router.get("/api/localhub/overview")
    def overview_json():
        return Response(json.dumps(shown(), ensure_ascii=False), media_type="application/json")

    return router
