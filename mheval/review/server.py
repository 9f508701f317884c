"""The review server: the Streamlit app (app.py) and the media endpoint, one ASGI application (Streamlit's `st.App`).

`mheval review serve` runs `streamlit run` on this file. Clips are served only at `/review-media/<grant>`, where a
grant is a random name the app issued for one side of one trial of a signed-in rater: the URL names no clip, model
or file (the same clip has a different URL in every trial), and it opens its clip only while the trial is the
rater's current one, for at most `--grant-minutes`, and while the rater is not revoked. The file is looked up in the
study's database, never built from the request path, so nothing outside media/ can be reached. Streamlit's own
static serving stays off.

A media response carries nothing that tells two clips apart or puts them in an order: no file date, no ETag (both
came from the file's times, so they showed which clip was encoded first and named the same clip across trials),
and every file of a study is the same length (`StudyStore.even_out_media`, done again at start). Range requests
still work, for seeking; a conditional one (If-Range) gets the whole file, as there is nothing to compare it with.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from mheval.review.storage import LOG_FILE, MEDIA_ROUTE, STUDY_ENV, StudyStore, served_study

MEDIA_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@lru_cache(maxsize=1)
def _store() -> StudyStore:
    """The endpoint's own connection (the app's sessions each have theirs)."""
    return served_study()


class BlindFileResponse(FileResponse):
    """A file with its length only: none of the validators Starlette derives from the file's times."""

    def set_stat_headers(self, stat_result: os.stat_result) -> None:
        self.headers.setdefault("content-length", str(stat_result.st_size))

    def _should_use_range(self, http_if_range: str) -> bool:
        return False   # no validator was ever sent, so no If-Range can match one


async def media(request: Request) -> Response:
    path = _store().granted_media(request.path_params["grant"])
    if path is None:
        return PlainTextResponse("not found", status_code=404, headers=MEDIA_HEADERS)
    return BlindFileResponse(path, media_type="video/mp4", headers=MEDIA_HEADERS)


def log_to_study(directory: Path) -> None:
    """The review log (refused sign-ins and app errors) to the server's stderr and to STUDY_DIR/review.log."""
    logger = logging.getLogger("mheval.review")
    if any(getattr(handler, "review_log", False) for handler in logger.handlers):
        return
    form = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(directory / LOG_FILE, encoding="utf-8")):
        handler.setFormatter(form)
        handler.review_log = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False   # once is enough, whatever the root logger does


@asynccontextmanager
async def lifespan(app):
    study = StudyStore(os.environ[STUDY_ENV])
    try:
        study.even_out_media()   # a study made before media were evened out
    finally:
        study.close()
    log_to_study(Path(os.environ[STUDY_ENV]))
    yield


app = st.App(Path(__file__).with_name("app.py"), lifespan=lifespan,
             routes=[Route(f"/{MEDIA_ROUTE}/{{grant}}", media)])
