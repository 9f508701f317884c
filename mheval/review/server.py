"""The review server: the Streamlit app (app.py) and the media endpoint, one ASGI application (Streamlit's `st.App`).

`mheval review serve` runs `streamlit run` on this file. Clips are served only at `/review-media/<grant>`, where a
grant is a random name the app issued for one side of one trial of a signed-in rater: the URL names no clip, model
or file (the same clip has a different URL in every trial), a revoked rater's grants stop working, and the file is
looked up in the study's database, never built from the request path, so nothing outside media/ can be reached.
Streamlit's own static serving stays off.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from mheval.review.storage import MEDIA_ROUTE, STUDY_ENV, StudyStore


@lru_cache(maxsize=1)
def _store() -> StudyStore:
    """The endpoint's own connection (the app's sessions each have theirs)."""
    return StudyStore(os.environ[STUDY_ENV])


async def media(request: Request) -> Response:
    path = _store().granted_media(request.path_params["grant"])
    if path is None:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(path, media_type="video/mp4",
                        headers={"Cache-Control": "private, no-transform", "X-Content-Type-Options": "nosniff"})


app = st.App(Path(__file__).with_name("app.py"), routes=[Route(f"/{MEDIA_ROUTE}/{{grant}}", media)])
