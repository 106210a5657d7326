"""``tpv reproduce``: run the paper's studies (:mod:`tpv.experiments`) with a profile."""

from __future__ import annotations

from tpv.cli import common
from tpv.core.errors import TPVError


def add_reproduce(commands) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="run the paper's studies (tpv.experiments)",
        formatter_class=common.formatter,
        description="Run the paper's studies with a profile: smoke (minutes, checks the pipeline), cpu (hours "
        "on a laptop), gpu (the paper's scale), their paper-smoke/paper-cpu/paper-gpu twins that follow "
        "the paper's official code (docs/protocol.md), or a path to a profile file. Runs are cached in "
        "--run-dir, so a rerun resumes.",
        epilog=common.examples_epilog(
            "tpv reproduce smoke --dry-run",
            "tpv reproduce paper-cpu --dry-run",
            "tpv reproduce cpu --study origin_independence",
            "tpv reproduce gpu --run-dir /scratch/tpv-runs",
        ),
    )
    profiles = "smoke|cpu|gpu|paper-smoke|paper-cpu|paper-gpu|PATH"
    parser.add_argument("profile", nargs="?", default=None, metavar="PROFILE", help=f"{profiles} (default: smoke)")
    parser.add_argument(
        "--profile",
        dest="profile_option",
        default=None,
        metavar=profiles,
        help="the same as PROFILE, for scripts written before PROFILE was positional",
    )
    parser.add_argument(
        "--study",
        "--studies",
        dest="study",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this study (repeatable)",
    )
    parser.add_argument("--run-dir", default=None, metavar="DIR", help="where runs and results go")
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="compute only part I of N into the run folder's cache, no pages (e.g. two processes with "
        "OMP_NUM_THREADS=1 on a 2-core CPU, then a run without --shard writes the pages)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_run_reproduce)


def _run_reproduce(args) -> int:
    try:
        from tpv.experiments import load_config, reproduce
        from tpv.experiments.config import ALL_STUDIES
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if isinstance(error, ModuleNotFoundError) and missing and not missing.startswith("tpv"):
            raise TPVError(
                f"tpv reproduce needs the package {missing!r}; install it with pip install 'tpv[all]'"
            ) from None
        # Also the case while tpv.experiments is only a half-built folder without reproduce().
        raise TPVError(
            f"tpv reproduce needs tpv.experiments.reproduce, which this installation of tpv does not "
            f"provide ({error}); update tpv (pip install -U tpv, or git pull in a clone)"
        ) from None
    with common.checking_arguments():
        if args.profile and args.profile_option and args.profile != args.profile_option:
            raise TPVError(
                f"tpv reproduce got two profiles, {args.profile!r} and --profile {args.profile_option!r}; "
                "give one, e.g. tpv reproduce smoke"
            )
        profile = args.profile or args.profile_option or "smoke"
        load_config(profile)  # an unknown profile or a bad profile file is refused before anything runs
        unknown = [study for study in args.study or () if study not in ALL_STUDIES]
        if unknown:
            raise TPVError(f"unknown --study {', '.join(unknown)}; choose from {', '.join(ALL_STUDIES)}")
    result = reproduce(
        profile,
        studies=args.study,
        run_dir=args.run_dir,
        dry_run=args.dry_run,
        progress=not args.quiet,
        shard=args.shard,
    )
    if result is not None:
        print(result)
    return 0
