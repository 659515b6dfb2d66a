"""What the hub checks before a request value reaches a file, a process or the page.

Any web page can reach loopback, so every write must come from the hub's own origin (or from a
client that sends no Origin, like huggingface_hub) with a JSON-family content type; every oid and
repo path is validated before it names a file; Space variable names and values are validated
before they reach a child's environment; secret values are scrubbed from everything shown.
"""
from __future__ import annotations

import hmac
import html
import json
import re
from urllib.parse import urlsplit

from starlette.requests import Request

from .storage import OID_PATTERN, HubHTTPError

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
JSON_TYPES = {"application/json", "application/x-ndjson", "application/ndjson", "application/vnd.git-lfs+json"}
FORM_TYPE = "application/x-www-form-urlencoded"  # HfApi.get_paths_info posts a form (a read)
SIGNED_UPLOAD_PREFIX = "/api/localhub/lfs/"  # the LFS PUT: octet-stream, authorized by its signature
# Variables that change which code the interpreter or the loader runs before the app's own command.
LOADER_VARIABLES = {"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONINSPECT",
                    "PYTHONEXECUTABLE", "PYTHONPLATLIBDIR", "PYTHONBREAKPOINT", "PYTHONWARNINGS",
                    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_ENV", "ENV", "PERL5OPT", "NODE_OPTIONS"}
MASK = "***"


# --- origin and content type ----------------------------------------------------------------
def own_origins(public_url: str | None) -> set[str]:
    """The origins of the hub's own page: its URL with the host spelled any loopback way."""
    if not public_url:
        return set()
    parts = urlsplit(public_url)
    origins = {f"{parts.scheme}://{parts.netloc}".lower()}
    if (parts.hostname in LOOPBACK_HOSTS or parts.hostname in ("0.0.0.0", "::")) and parts.port:
        origins |= {f"{parts.scheme}://{host}:{parts.port}" for host in ("127.0.0.1", "localhost", "[::1]")}
    return origins


def serves_loopback_only(public_url: str | None) -> bool:
    return bool(public_url) and urlsplit(public_url).hostname in LOOPBACK_HOSTS


def refuse_foreign_host(request: Request, loopback_only: bool) -> HubHTTPError | None:
    """403 for a Host that is not a loopback name on a loopback hub: a page of a domain that
    re-resolves to 127.0.0.1 (DNS rebinding) would otherwise be same-origin with the hub."""
    if not loopback_only:
        return None
    host = request.headers.get("host", "")
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if hostname.lower() not in LOOPBACK_HOSTS:
        return HubHTTPError(403, f"Host {host!r} refused: this hub answers only on 127.0.0.1, localhost or [::1]")
    return None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers


def refuse_cross_origin_write(request: Request, origins: set[str]) -> HubHTTPError | None:
    """403 for a write a web page of another origin sent; 415 for a body of a non-JSON type."""
    if request.method in READ_METHODS:
        return None
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in origins:
        return HubHTTPError(403, f"cross-origin request refused: Origin {origin!r} is not this hub's own page")
    if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return HubHTTPError(403, "cross-site request refused (Sec-Fetch-Site)")
    path = request.url.path
    if has_body(request) and not path.startswith(SIGNED_UPLOAD_PREFIX):
        allowed = JSON_TYPES | ({FORM_TYPE} if "/paths-info/" in path else set())
        if media_type(request) not in allowed:
            return HubHTTPError(415, f"unsupported Content-Type {media_type(request)!r}: send application/json")
    return None


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


# --- request bodies -------------------------------------------------------------------------
async def json_body(request: Request, required: bool = True) -> dict:
    """The body as a JSON object; 400 with the reason when it is not one."""
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise HubHTTPError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise HubHTTPError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    return body


def field(body: dict, key: str, kind: type | tuple = str, where: str = "the request body"):
    """body[key], required and of `kind`; 422 naming the field otherwise."""
    if key not in body or body[key] is None:
        raise HubHTTPError(422, f"missing {key!r} in {where}")
    if not isinstance(body[key], kind) or isinstance(body[key], bool) and kind in (int, (int, float)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise HubHTTPError(422, f"{key!r} in {where} must be {names}, got {type(body[key]).__name__}")
    return body[key]


def optional(body: dict, key: str, kind: type | tuple = str, where: str = "the request body"):
    return None if body.get(key) is None else field(body, key, kind, where)


# --- values that name files -----------------------------------------------------------------
def validate_oid(oid) -> str:
    if not isinstance(oid, str) or not OID_PATTERN.match(oid):
        raise HubHTTPError(422, f"invalid LFS oid {oid!r}: must be the 64 hex characters of a sha256")
    return oid


def validate_repo_path(path) -> str:
    """A file path inside a repo: relative, '/'-separated, no '..', '.', empty segment or backslash."""
    if not isinstance(path, str) or not path:
        raise HubHTTPError(422, f"invalid file path {path!r}: must be a non-empty string")
    parts = path.split("/")
    if ("\\" in path or "\0" in path or path.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or re.match(r"^[A-Za-z]:", path)):
        raise HubHTTPError(422, f"invalid file path {path!r}: use a relative path like 'folder/file.txt' "
                                "(no '..', '.', empty segments, backslashes or absolute paths)")
    return path


# --- Space variables and secrets ------------------------------------------------------------
def validate_variable(kind: str, key, value, hub_is_open: bool) -> tuple[str, str]:
    """Like the Hub: a shell-style name and a string value; 422 otherwise. An open hub also refuses
    the loader variables: anyone who reaches it could otherwise make a bound Space run other code."""
    if not isinstance(key, str) or not VARIABLE_NAME.match(key):
        raise HubHTTPError(422, f"invalid {kind} name {key!r}: use letters, digits and '_', not starting with a digit")
    if value is None or isinstance(value, (dict, list)):
        raise HubHTTPError(422, f"{kind} {key!r} needs a string 'value'")
    value = str(value)
    if "\0" in value:
        raise HubHTTPError(422, f"{kind} {key!r}: the value holds a NUL character")
    if hub_is_open and key.upper() in LOADER_VARIABLES:
        raise HubHTTPError(422, f"{kind} {key!r} changes how Python or the loader starts code: an open hub (no "
                                "token) refuses it; start the hub with LOCALHUB_TOKEN to allow it")
    return key, value


# --- never showing a secret -----------------------------------------------------------------
def scrub(text: str, secrets: list[str]) -> str:
    """Replace every secret, raw, HTML-escaped or JSON-escaped, with a mask. Scrub data, then
    render it: scrubbing rendered HTML could cut markup apart."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        for form in sorted({secret, html.escape(secret), json.dumps(secret)[1:-1]}, key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def scrub_data(data, secrets: list[str]):
    """Every string of a JSON-like tree, scrubbed."""
    if isinstance(data, str):
        return scrub(data, secrets)
    if isinstance(data, dict):
        return {scrub_data(k, secrets): scrub_data(v, secrets) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub_data(item, secrets) for item in data]
    return data
