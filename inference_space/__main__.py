"""`python -m inference_space`: serve the app with uvicorn on $PORT (7860 by default).

The model starts loading first, in its thread; the web app, the feedback store and their
imports (fastapi, sqlalchemy, prometheus_client) are set up while it downloads."""
from __future__ import annotations

import logging
import sys

from configs import ConfigError
from inference_space.settings import load_settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    from inference_space.serving import model_server

    server = model_server(settings)
    server.start_loading()
    import uvicorn

    from feedback.store import FeedbackError
    from inference_space.app import create_app

    try:
        app = create_app(settings, server=server)
    except FeedbackError as error:  # a bad FEEDBACK_DB_URL or a schema conflict: retrying cannot help
        print(f"inference Space cannot start: {error}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
