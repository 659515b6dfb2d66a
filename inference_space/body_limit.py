"""An ASGI middleware refusing request bodies over a byte limit with 413, before they are read
(Content-Length) or as soon as the streamed bytes pass it (chunked bodies)."""
from __future__ import annotations

import json

from starlette.exceptions import HTTPException


class BodyTooLarge(HTTPException):
    """Raised from receive(): FastAPI passes HTTPExceptions on, so the answer stays a 413."""

    def __init__(self, limit: int, setting: str):
        super().__init__(413, f"the request body is over {setting}={limit} bytes; send fewer or shorter texts")


class BodyLimit:
    def __init__(self, app, max_bytes: int, setting: str = "MAX_REQUEST_BYTES"):
        self.app, self.max_bytes, self.setting = app, max_bytes, setting

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self.refuse(send)
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes, self.setting)
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await self.refuse(send)

    async def refuse(self, send) -> None:
        body = json.dumps({"detail": BodyTooLarge(self.max_bytes, self.setting).detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
