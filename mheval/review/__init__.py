"""Blind pairwise A/B human review of a run's clips: study creation, the rater app, and the statistics.

    mheval review create RUN_DIR --models A,B     study.py    pairs, catch trials, opaque media, raters' queues
    mheval review invite / revoke STUDY           storage.py  one SQLite database (WAL) per study, tokens as hashes
    mheval review serve STUDY                     server.py   Streamlit (app.py) + a media endpoint that checks grants
    mheval review report / export STUDY           stats.py    Wilson, Davidson and Arena Bradley–Terry, agreement,
                                                  report.py   bias, catch trials, power, metric–human agreement
"""
