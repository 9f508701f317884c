"""`mheval review create | invite | revoke | serve | report | export`: a blind pairwise study from a run's clips."""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

EXAMPLE = """\
a study end to end:
  mheval review create runs/smoke --models puppet,late            # -> runs/smoke/studies/puppet-vs-late
  mheval review invite runs/smoke/studies/puppet-vs-late --name ana --languages en,de
  mheval review serve runs/smoke/studies/puppet-vs-late --port 8502   # raters open http://HOST:8502
  mheval review report runs/smoke/studies/puppet-vs-late --markdown study.md --json study.json
  mheval review export runs/smoke/studies/puppet-vs-late --out votes.parquet

exit codes: 0 success; 2 bad input (the message names the file or rater and the problem).
"""


def add_review_parser(sub) -> None:
    parser = sub.add_parser("review", help="blind pairwise A/B human review of a run's clips",
                            description="Create a blind pairwise study from a run, invite raters, serve the review "
                                        "app, and report the results with their statistics.",
                            epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    from mheval.review.study import StudyConfig
    defaults = StudyConfig(models=("a", "b"))
    create = commands.add_parser(
        "create", help="build a study from a run's clips",
        description="Pairs are the same prompt from two models, balanced over prompts, languages and model pairs; "
                    "each pair is shown in both side orders across raters, sides logged per trial. Every clip is "
                    "re-encoded under a random name; about one trial in ten is a catch trial (audio shifted 500 ms, "
                    "frozen video, identical clips) and a few trials come back later with the sides swapped.")
    create.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    create.add_argument("--models", required=True, help="comma-separated model labels of the run (≥ 2); win/tie/loss "
                                                        "is reported from the first model's side")
    create.add_argument("--criteria", default=",".join(defaults.criteria),
                        help=f"comma-separated subset of {', '.join(defaults.criteria)} (default: all)")
    create.add_argument("--out", type=Path, default=None, help="study directory (default RUN_DIR/studies/A-vs-B)")
    create.add_argument("--seed", type=int, default=defaults.seed, help="seed of pairing, sides and queues")
    create.add_argument("--catch-rate", type=float, default=defaults.catch_rate,
                        help=f"share of each rater's trials that are catch trials (default {defaults.catch_rate})")
    create.add_argument("--repeat-rate", type=float, default=defaults.repeat_rate,
                        help=f"real trials repeated later with sides swapped, per real trial "
                             f"(default {defaults.repeat_rate})")
    create.add_argument("--trials-per-rater", type=int, default=None,
                        help="real pairs per rater (default: every pair in the rater's languages)")
    create.add_argument("--adaptive", action="store_true",
                        help="fill each rater's next real trial from the model pair whose win share is least "
                             "certain (logged per trial)")
    create.add_argument("--dwell-factor", type=float, default=defaults.dwell_factor,
                        help="a vote is accepted after this × (left + right clip seconds) since the trial was "
                             f"shown, on the server's clock (default {defaults.dwell_factor:g})")
    create.add_argument("--undo-seconds", type=float, default=defaults.undo_seconds,
                        help=f"how long a submitted trial can be undone (default {defaults.undo_seconds:g})")
    create.add_argument("--no-progress", action="store_true", help="no progress bars")
    create.set_defaults(handler=cmd_create)

    invite = commands.add_parser("invite", help="add a rater and print their one-time token",
                                 description="The token is printed once and stored only as a hash.")
    invite.add_argument("study", type=Path, metavar="STUDY_DIR")
    invite.add_argument("--name", required=True, help="the rater's name (unique in the study)")
    invite.add_argument("--languages", default="", help="comma-separated languages the rater can judge "
                                                        "(default: all); they only get speech in these")
    invite.add_argument("--new-token", action="store_true",
                        help="replace an existing rater's token (the old one stops working; their votes, "
                             "languages and queue stay)")
    invite.set_defaults(handler=cmd_invite)

    revoke = commands.add_parser("revoke", help="stop a rater's token (their votes stay, marked in the report)")
    revoke.add_argument("study", type=Path, metavar="STUDY_DIR")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(handler=cmd_revoke)

    from mheval.review.storage import DEFAULT_GRANT_SECONDS

    serve = commands.add_parser("serve", help="serve the review app (Streamlit, headless)",
                                description="Serve the rater app. Localhost only by default; use --address 0.0.0.0 "
                                            "behind HTTPS to reach raters on other machines. Refused sign-ins are "
                                            "logged to stderr and STUDY_DIR/review.log with their address.")
    serve.add_argument("study", type=Path, metavar="STUDY_DIR")
    serve.add_argument("--port", type=int, default=8502, help="default 8502")
    serve.add_argument("--address", default="localhost", help="address to bind (default localhost)")
    serve.add_argument("--trusted-proxy", type=proxy_addresses, default=(), metavar="ADDRESSES",
                       help="comma-separated addresses or networks (e.g. 127.0.0.1 or 10.0.0.0/8) of reverse proxies "
                            "whose X-Forwarded-For names the rater's address for the sign-in limit; default none: "
                            "the connection's own peer counts and X-Forwarded-For is ignored, since any client can "
                            "send one")
    serve.add_argument("--grant-minutes", type=positive_minutes, default=DEFAULT_GRANT_SECONDS / 60,
                       help="a clip's URL plays for at most this long after the page showed it, and only until its "
                            f"trial is submitted (default {DEFAULT_GRANT_SECONDS / 60:g})")
    serve.set_defaults(handler=cmd_serve)

    report = commands.add_parser("report", help="results: shares with intervals, ratings, agreement, raters",
                                 description="Per criterion, matchup and language: win/tie/loss and the decisive "
                                             "win share with 95% intervals clustered by prompt and rater, and "
                                             "Holm-adjusted verdicts; Davidson and Arena-style Bradley–Terry "
                                             "ratings; "
                                             "Krippendorff's α and Fleiss' κ; left-side bias; raters' catch-trial "
                                             "pass rates and self-consistency (with n; revoked raters marked); "
                                             "votes needed; metric–human "
                                             "agreement; and a protocol paragraph.")
    report.add_argument("study", type=Path, metavar="STUDY_DIR")
    report.add_argument("--exclude-failing-raters", action="store_true",
                        help="leave out the votes of raters who fail the catch trials or self-consistency")
    report.add_argument("--markdown", type=Path, help="write the report as Markdown")
    report.add_argument("--json", type=Path, help="write the report as JSON")
    report.add_argument("--margin", type=float, default=0.55,
                        help="decisive win share at which to count the votes needed (default 0.55)")
    report.add_argument("--run", type=Path, default=None,
                        help="run directory for metric–human agreement (default: the run the study was made from)")
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser("export", help="every vote as CSV or parquet")
    export.add_argument("study", type=Path, metavar="STUDY_DIR")
    export.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file")
    export.set_defaults(handler=cmd_export)


def _open(study: Path):
    from mheval.review.storage import StudyStore

    return StudyStore(study)


def cmd_create(args: argparse.Namespace) -> int:
    from mheval.review.study import StudyConfig, create_study, study_summary

    config = StudyConfig(models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                         criteria=tuple(c.strip() for c in args.criteria.split(",") if c.strip()), seed=args.seed,
                         catch_rate=args.catch_rate, repeat_rate=args.repeat_rate,
                         trials_per_rater=args.trials_per_rater, adaptive=args.adaptive,
                         dwell_factor=args.dwell_factor, undo_seconds=args.undo_seconds)
    out = args.out or args.run_dir / "studies" / "-vs-".join(config.models)
    store = create_study(args.run_dir, config, out, progress=not args.no_progress)
    summary = study_summary(store)
    store.close()
    print(f"study {out}: {summary['prompts']} prompts ({', '.join(summary['languages'])}), {summary['real pairs']} "
          f"pairs, {summary['catch pairs']} catch pairs, {summary['media files']} media files")
    print(f"next: mheval review invite {out} --name NAME [--languages {','.join(summary['languages'])}]")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from mheval.review.study import validate_languages

    languages = validate_languages([c.strip() for c in args.languages.split(",") if c.strip()])
    if languages and args.new_token:
        raise ValueError("--new-token keeps the rater's languages (their queue is planned for them); "
                         "leave out --languages, or invite a new rater")
    store = _open(args.study)
    token = store.invite(args.name, languages, new_token=args.new_token)
    store.close()
    print(f"token for {args.name} ({', '.join(languages) or 'all languages'}), shown only now:\n\n  {token}\n")
    print(f"serve the study with: mheval review serve {args.study}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    store = _open(args.study)
    store.revoke(args.name)
    store.close()
    print(f"revoked {args.name}: their token no longer signs in or plays clips")
    return 0


def proxy_addresses(text: str) -> tuple[str, ...]:
    """`--trusted-proxy`: IP addresses or networks, checked here (uvicorn would take a typo as a name never seen)."""
    addresses = tuple(part.strip() for part in text.split(",") if part.strip())
    for address in addresses:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{address!r} is not an IP address or network") from None
    return addresses


def positive_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes, got {text}")
    return minutes


def serve_environment(study: Path, trusted_proxies: tuple[str, ...], grant_minutes: float) -> dict[str, str]:
    """What the server process needs besides its command line. uvicorn (under Streamlit) rewrites a request's client
    address from X-Forwarded-For when the peer is in FORWARDED_ALLOW_IPS, by default 127.0.0.1 and ::1, so any local
    client could choose its own address; empty, no peer is trusted."""
    from mheval.review.storage import GRANT_SECONDS_ENV, STUDY_ENV

    return {STUDY_ENV: str(study.resolve()), GRANT_SECONDS_ENV: str(grant_minutes * 60),
            "FORWARDED_ALLOW_IPS": ",".join(trusted_proxies)}


def serve_command(study: Path, port: int, address: str) -> list[str]:
    server = Path(__file__).with_name("server.py")
    return [sys.executable, "-m", "streamlit", "run", str(server), "--server.headless", "true",
            "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--client.showErrorDetails", "none",
            "--server.enableStaticServing", "false", "--server.runOnSave", "false"]


def cmd_serve(args: argparse.Namespace) -> int:
    _open(args.study).close()
    command = serve_command(args.study, args.port, args.address)
    os.environ.update(serve_environment(args.study, args.trusted_proxy, args.grant_minutes))
    print(f"mheval review: http://{args.address}:{args.port}  (Ctrl-C to stop)", flush=True)
    os.execv(command[0], command)   # become the server, so stopping this process stops it


def cmd_report(args: argparse.Namespace) -> int:
    from mheval.review.report import build_report, print_report, to_json, to_markdown
    from mheval.files import write_bytes_atomic, write_json_atomic

    store = _open(args.study)
    report = build_report(store, exclude_failing_raters=args.exclude_failing_raters, margin=args.margin,
                          run_dir=args.run)
    store.close()
    print_report(report)
    if args.markdown:
        write_bytes_atomic(args.markdown, to_markdown(report).encode())
    if args.json:
        write_json_atomic(args.json, to_json(report))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mheval.review.report import votes_table
    from mheval.files import write_bytes_atomic

    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{args.out}: export to a .csv or .parquet file")
    store = _open(args.study)
    table = votes_table(store)
    store.close()
    write_bytes_atomic(args.out, table.to_csv(index=False).encode() if suffix == ".csv"
                       else table.to_parquet(index=False))
    print(f"{len(table)} votes → {args.out}")
    return 0
