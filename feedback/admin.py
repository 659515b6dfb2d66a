"""Admin endpoints for the inference Space (or any FastAPI app):

    POST /admin/retrain   publish the next dataset version and restart the retrain Space now
    GET  /admin/status    last dataset version, pending reviews, next due, last job outcome

Both need `Authorization: Bearer $ADMIN_TOKEN`. Without ADMIN_TOKEN set they answer 503:
an unprotected retrain button on a public Space would let anyone burn GPU hours. Publishing needs
pandas and pyarrow: where they are not installed (the slim inference image) /admin/retrain answers
501 saying how to get them, and /admin/status lists them under `missing_for_publishing`.

    app.include_router(admin_router(cfg, FeedbackStore.from_env(), HubClient.from_config(cfg)))
"""
from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Depends, Header, HTTPException

from configs import JobConfig
from feedback.settings import FeedbackSettings
from feedback.store import DatabaseUnavailable, FeedbackError, FeedbackStore, JobAlreadyRunning, SchemaConflict
from feedback.trigger import PublishingUnavailable, run_trigger, trigger_status
from hub import HubError

log = logging.getLogger("feedback.admin")


def database_unavailable(error: DatabaseUnavailable) -> HTTPException:
    """503 without the database's words (they name its host and user); those go to the log."""
    log.error("feedback database unavailable: %s", error)
    return HTTPException(503, "the feedback database is unavailable; try again later (the logs say why)")


def require_admin_token(settings: FeedbackSettings):
    def check(authorization: str | None = Header(None)) -> None:
        if settings.admin_token is None:
            raise HTTPException(503, "admin endpoints are disabled: set the ADMIN_TOKEN secret of this Space")
        scheme, _, given = (authorization or "").partition(" ")
        expected = settings.admin_token.get_secret_value()
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "send 'Authorization: Bearer <ADMIN_TOKEN>'",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def admin_router(cfg: JobConfig, store: FeedbackStore, hub, settings: FeedbackSettings | None = None,
                 controller_class=None) -> APIRouter:
    settings = settings or FeedbackSettings()
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_token(settings))])

    @router.post("/retrain")
    def retrain() -> dict:
        """Admin trigger: publish what is reviewed and restart the retrain Space, due or not."""
        try:
            result = run_trigger(cfg, store, hub, settings, force=True, controller_class=controller_class)
        except PublishingUnavailable as error:  # the slim inference image: a build choice, not a failure
            raise HTTPException(501, str(error)) from None
        except JobAlreadyRunning as error:
            raise HTTPException(409, str(error)) from None
        except DatabaseUnavailable as error:
            raise database_unavailable(error) from None
        except SchemaConflict as error:  # permanent: a person must fix the database
            raise HTTPException(500, str(error)) from None
        except FeedbackError as error:
            raise HTTPException(422, str(error)) from None
        except HubError as error:
            raise HTTPException(502, f"the Hub failed: {error}") from None
        return result.to_dict()

    @router.get("/status")
    def status() -> dict:
        try:
            return trigger_status(cfg, store, hub, settings)
        except DatabaseUnavailable as error:
            raise database_unavailable(error) from None
        except HubError as error:
            raise HTTPException(502, f"the Hub could not tell the dataset versions: {error}") from None

    return router
