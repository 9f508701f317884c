"""The rater's page (Streamlit), served by `mheval review serve STUDY`.

Token, then one trial at a time: the prompt (scene and spoken line), clip A and clip B side by side, each with its
own sound and never both at once (starting one pauses the other), the criteria as A / tie / B buttons with keyboard
shortcuts, progress, "submit & next" and a short undo. Every click is stored at once (a refresh loses nothing) and
only this rater's own answers are ever read.

Why the vote gate is on the server: Streamlit gives a script no `ended` event from a browser's video, and any event a
page reports can be sent by the page without playing anything. The server instead records when it first showed the
trial and accepts the vote only once the left and right clips' durations, added (they cannot play at once), have
passed on its own clock: no rater can answer before they could have heard both clips to the end.
"""
from __future__ import annotations

import logging
import re

import streamlit as st

from mheval.review.storage import CRITERION_LABELS, MEDIA_ROUTE, StudyError, StudyStore, VoteRefused, served_study
from mheval.review.study import TrialView, next_trial

LOG = logging.getLogger("mheval.review")

# One keyboard row per criterion, left to right: A, tie, B (C and R are reserved by Streamlit).
SHORTCUTS = (("1", "2", "3"), ("Q", "W", "E"), ("A", "S", "D"), ("Z", "X", "V"))
ANSWERS = (("left", "A"), ("tie", "tie"), ("right", "B"))

STYLE = """<style>
header[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stAppDeployButton"],
[data-testid="stMainMenu"], [data-testid="stDecoration"], #MainMenu, footer { display: none !important; }
.block-container { padding-top: 1.5rem; }
.mh-pair { display: flex; gap: 1rem; flex-wrap: wrap; }
.mh-pair figure { flex: 1 1 320px; margin: 0; }
.mh-pair figcaption { font-weight: 700; font-size: 1.3rem; margin-bottom: .25rem; }
.mh-pair video { width: 100%; background: #000; border-radius: 4px; }
</style>"""

# Starting one clip pauses the other, so two sounds never play at once.
PAIR_SCRIPT = """<script>
(() => {
  const videos = Array.from(document.querySelectorAll(".mh-pair video"));
  for (const video of videos) {
    if (video.dataset.bound) continue;
    video.dataset.bound = "1";
    video.addEventListener("play", () => videos.forEach(other => { if (other !== video) other.pause(); }));
  }
})();
</script>"""


def store() -> StudyStore:
    """This browser session's connection to the study (one per session: a connection's transactions are its own)."""
    if "store" not in st.session_state:
        st.session_state.store = served_study()
    return st.session_state.store


def say(kind: str, text: str) -> None:
    """A message for the next run of the page (callbacks run before it)."""
    st.session_state.message = (kind, text)


def sign_in() -> int | None:
    rater_id = st.session_state.get("rater_id")
    if rater_id is not None:
        if not store().rater(rater_id).revoked:
            return rater_id
        st.session_state.pop("rater_id")
        st.error("This token has been revoked. Ask the study's organiser for a new one.")
    st.title("Compare video clips")
    st.write("Enter the token you were given. You can stop at any time and continue later with the same token.")
    with st.form("sign-in"):
        token = st.text_input("Token", type="password", key="token")
        if st.form_submit_button("Start", type="primary"):
            # The connection's peer, or what a trusted proxy forwarded (`serve --trusted-proxy`); None on localhost.
            address = st.context.ip_address
            client = address if isinstance(address, str) else ""
            try:
                st.session_state.rater_id = store().authenticate(token, client=client).rater_id
                st.rerun()
            except StudyError as refusal:
                LOG.warning("sign-in refused from %s: %s", client or "localhost (or an unknown address)", refusal)
                st.error(str(refusal))
    return None


def choose(rater_id: int, trial_id: str, criterion: str, verdict: str) -> None:
    try:
        store().save_choice(rater_id, trial_id, criterion, verdict)
    except VoteRefused as refusal:
        say("warning", refusal.reason)


def submit(rater_id: int, trial_id: str) -> None:
    try:
        if store().submit_votes(rater_id, trial_id, store().choices(rater_id, trial_id)):
            say("success", "Saved.")
    except VoteRefused as refusal:
        say("warning", refusal.reason)


def undo(rater_id: int, trial_id: str) -> None:
    try:
        store().undo(rater_id, trial_id)
        say("info", "Your last answers are back; change them and submit again.")
    except VoteRefused as refusal:
        say("warning", refusal.reason)


def plain(text: str) -> str:
    """Prompt text shown as written: Markdown's special characters escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


def clips_html(trial: TrialView) -> str:
    videos = "".join(
        f'<figure><figcaption>{label}</figcaption><video src="{MEDIA_ROUTE}/{store().grant(trial.trial_id, side)}" '
        'controls playsinline preload="auto" controlslist="nodownload noplaybackrate" disablepictureinpicture>'
        "</video></figure>" for side, label in (("left", "A"), ("right", "B")))
    return f'<div class="mh-pair">{videos}</div>{PAIR_SCRIPT}'


def trial_page(rater_id: int, trial: TrialView) -> None:
    criteria = store().settings()["criteria"]
    st.progress((trial.position - 1) / trial.total, text=f"Trial {trial.position} of {trial.total}")
    st.markdown(f"**Scene:** {plain(trial.scene)}")
    st.markdown(f"**Spoken line:** “{plain(trial.spoken)}”")
    st.html(clips_html(trial), unsafe_allow_javascript=True)
    st.caption(f"Play A and B to the end, one after the other (about {trial.seconds_to_watch:.0f} s), then answer "
               "each question: A = left clip, B = right clip, or tie. Keys: each row's three keys, left to right; "
               "Enter submits.")
    chosen = store().choices(rater_id, trial.trial_id)
    for index, criterion in enumerate(criteria):
        label, *buttons = st.columns([2, 1, 1, 1], vertical_alignment="center")
        label.markdown(f"**{CRITERION_LABELS[criterion]}**")
        for column, (verdict, text), key in zip(buttons, ANSWERS, SHORTCUTS[index]):
            column.button(text, key=f"{criterion}-{verdict}", shortcut=key, width="stretch",
                          type="primary" if chosen.get(criterion) == verdict else "secondary",
                          on_click=choose, args=(rater_id, trial.trial_id, criterion, verdict))
    st.button("Submit & next", key="submit", shortcut="Enter", type="primary",
              on_click=submit, args=(rater_id, trial.trial_id))


def undo_button(rater_id: int) -> None:
    last = store().undoable(rater_id)
    if last is not None:
        st.button("Undo last submit", key="undo", shortcut="Backspace", on_click=undo,
                  args=(rater_id, last.trial_id))


def main() -> None:
    st.set_page_config(page_title="Compare clips", layout="wide", initial_sidebar_state="collapsed")
    st.html(STYLE)
    rater_id = sign_in()
    if rater_id is None:
        return
    kind, text = st.session_state.pop("message", (None, None))
    if kind:
        getattr(st, kind)(text)
    try:
        trial = next_trial(store(), rater_id)
    except StudyError as refusal:
        st.error(str(refusal))
        return
    if trial is None:
        st.success("All done — thank you! You can close this page.")
    else:
        trial_page(rater_id, trial)
    undo_button(rater_id)


try:
    main()
except Exception:   # the browser gets no detail: a traceback could name a file or a model
    LOG.exception("review app failed")
    st.error("Something went wrong. Your answers so far are saved; reload the page to continue.")
