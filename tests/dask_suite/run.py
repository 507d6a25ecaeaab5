"""Dask's own test suite on Dask's default scheduler and on ours; print what only we fail.

    python tests/dask_suite/run.py                       # the four module groups, default mode
    python tests/dask_suite/run.py --strict --modules dask.bag.tests
    python tests/dask_suite/run.py -k groupby --modules dask.dataframe.tests
    python tests/dask_suite/run.py --reuse-dask          # keep Dask's pass from a former run
    python tests/dask_suite/run.py --tests /tmp/dask-suite/differences.ours-default.json
                                                         # only the tests that differed
    python tests/dask_suite/run.py --scheduler processes --tests ...
                                                         # Dask's processes scheduler instead
    python tests/dask_suite/run.py -- --maxfail=50       # more pytest options after --

For each module group, two pytest sessions run one after the other, with the modules as
installed with Dask (``pytest --pyargs``): Dask's pass (the plugin only records outcomes) and
our pass (``tests/dask_suite/plugin.py`` makes one ``LocalCluster`` Dask's default scheduler;
with ``--strict`` the names of Dask's local schedulers too). Outcomes go to
``OUT/<module>.<pass>.jsonl``, pytest's output to ``OUT/<module>.<pass>.log``; the differences,
with the failure texts, to ``OUT/differences.<scheduler>-<mode>.json``. File names do not
depend on ``-k`` or ``--tests``: run subsets with ``--reuse-dask`` (Dask's complete pass stays)
or in another ``--out``.

The exit status is 0 when every session ran (whatever the tests did: the differences are the
output), 1 when a pytest session could not run or died.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = (
    "dask.array.tests",
    "dask.bag.tests",
    "dask.dataframe.tests",
    "dask.tests.test_delayed",
)
REPOSITORY = Path(__file__).resolve().parents[2]
# pytest's exit statuses for a session that ran: all passed, some failed, nothing collected.
RAN = (0, 1, 5)
BAD = ("failed", "error", "timeout", "crashed")
# A pass whose pytest process dies (a segmentation fault in a test) resumes after the test
# that was running, at most this many times.
RESUMES = 25
INI = "[pytest]\n# dask-suite: no options of any project\n"


def main(argv: list[str] | None = None) -> int:
    arguments, pytest_arguments = _parse(sys.argv[1:] if argv is None else argv)
    out = Path(arguments.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "pytest.ini").write_text(INI)
    arguments.include = _tests_file(arguments.tests, out) if arguments.tests else None
    arguments.include_digest = (
        hashlib.sha256(arguments.include.read_bytes()).hexdigest() if arguments.include else None
    )
    mode = "strict" if arguments.strict else "default"
    ours_name = f"{arguments.scheduler}-{mode}"
    print(
        f"dask-suite: modules {' '.join(arguments.modules)}; our mode {mode}; "
        f"timeout {arguments.timeout:g} s per test; output in {out}",
        flush=True,
    )
    print(_HEADER, flush=True)
    rows = []
    problems = []
    differences = []
    improvements = []
    for module in arguments.modules:
        results = {}
        for name in ("dask", ours_name):
            path = out / f"{module}.{name}.jsonl"
            if name == "dask":
                skip = arguments.only == "ours" or (
                    arguments.reuse_dask and _reusable(path, arguments)
                )
            else:
                skip = arguments.only == "dask"
            if skip:
                results[name], seconds = _load(path), None
            else:
                seconds, problem = _pass(
                    module, "off" if name == "dask" else mode, path, arguments, pytest_arguments
                )
                results[name] = _load(path)
                if problem:
                    problems.append(f"{module} ({name}): {problem}")
            if results[name] or not skip:
                rows.append(_counts(module, name, results[name], seconds))
                print(_format_row(rows[-1]), flush=True)
        dask_results, ours = results["dask"], results[ours_name]
        for nodeid, entry in dask_results.items():
            theirs = ours.get(nodeid)
            if theirs is None:
                continue
            if entry["outcome"] in ("passed", "xpassed") and theirs["outcome"] in BAD:
                differences.append({"module": module, **theirs})
            elif entry["outcome"] in BAD and theirs["outcome"] == "passed":
                improvements.append({"module": module, **theirs, "dask": entry})

    print()
    print(_HEADER)
    for row in rows:
        print(_format_row(row))
    print()
    print(
        f"Pass on Dask's default scheduler, fail on {arguments.scheduler} ({mode} mode): "
        f"{len(differences)}"
    )
    for entry in differences:
        print(f"  {entry['outcome'].upper():8} {entry['nodeid']}  --  {entry.get('reason', '')}")
    if improvements:
        print()
        print(
            f"Fail on Dask's default scheduler, pass on {arguments.scheduler}: {len(improvements)}"
        )
        for entry in improvements:
            print(f"  {entry['nodeid']}  --  Dask's: {entry['dask'].get('reason', '')}")
    (out / f"differences.{arguments.scheduler}-{mode}.json").write_text(
        json.dumps({"differences": differences, "improvements": improvements}, indent=1)
    )
    if problems:
        print()
        for problem in problems:
            print(f"dask-suite: {problem}")
        return 1
    return 0


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="dask-suite", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--modules", nargs="+", default=list(MODULES), metavar="MODULE")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest's -k, for both passes")
    parser.add_argument(
        "--strict", action="store_true", help="route scheduler='sync'/'threads'/... to ours too"
    )
    parser.add_argument(
        "--scheduler",
        choices=("ours", "processes"),
        default="ours",
        help="processes: Dask's processes scheduler in our place, as a reference (failures "
        "that any scheduler running tasks in other processes shares)",
    )
    parser.add_argument(
        "--tests",
        default=None,
        metavar="FILE",
        help="run only these node ids: a file of node ids, one a line, or the differences.*.json "
        "of a former run",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="pytest-timeout, per test")
    parser.add_argument("--workers", type=int, default=2, help="workers of the LocalCluster")
    parser.add_argument(
        "--out", default=os.path.join(tempfile.gettempdir(), "dask-suite"), help="output folder"
    )
    parser.add_argument(
        "--reuse-dask",
        action="store_true",
        help="reuse Dask's pass of a module from OUT (it does not depend on us) when it ran to "
        "its end with this Dask version, on every test or on the same -k/--tests selection",
    )
    parser.add_argument(
        "--only",
        choices=("both", "dask", "ours"),
        default="both",
        help="run one pass only (the other is read from OUT when there)",
    )
    return parser.parse_args(argv), extra


def _pass(module, mode, path, arguments, pytest_arguments) -> tuple[float, str | None]:
    """Run one pass of a module; resume after the running test when pytest dies. Returns the
    seconds it took and a problem when the pass could not run to its end."""
    log = path.with_suffix(".log")
    path.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    exclude = path.with_suffix(".exclude")
    exclude.unlink(missing_ok=True)
    started = time.perf_counter()
    for attempt in range(RESUMES + 1):
        status = _session(
            module, mode, path, log, exclude, attempt > 0, arguments, pytest_arguments
        )
        if _complete(path):
            if status in RAN:
                return time.perf_counter() - started, None
            return time.perf_counter() - started, f"pytest exited with status {status}; see {log}"
        # The session died: the test it was running is "crashed"; clean what its cluster left.
        running, roots, seen = _interrupted(path)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        if running is None:
            return time.perf_counter() - started, f"pytest died (status {status}); see {log}"
        with open(path, "a") as report:
            entry = {
                "nodeid": running,
                "outcome": "crashed",
                "duration": 0.0,
                "reason": f"the pytest process died: {_death(log, status)}",
            }
            report.write(json.dumps(entry) + "\n")
        exclude.write_text("".join(f"{nodeid}\n" for nodeid in [*seen, running]))
    return time.perf_counter() - started, f"pytest died more than {RESUMES} times; see {log}"


def _session(module, mode, path, log, exclude, resume, arguments, pytest_arguments) -> int:
    import dask  # where Dask is installed: the root of the node ids

    site = Path(dask.__file__).resolve().parents[1]
    out = path.parent
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        module,
        "-c",
        str(out / "pytest.ini"),
        "--rootdir",
        str(site),
        "-p",
        "no:cacheprovider",
        "-p",
        "dask_suite.plugin",
        f"--dask-suite-mode={mode}",
        f"--dask-suite-report={path}",
        f"--dask-suite-workers={arguments.workers}",
        f"--dask-suite-scheduler={arguments.scheduler}",
        f"--timeout={arguments.timeout:g}",
        "-q",
        "-rN",
    ]
    if resume:
        command += ["--dask-suite-append", f"--dask-suite-exclude={exclude}"]
    if arguments.include:
        command += [f"--dask-suite-include={arguments.include}"]
    if arguments.keyword:
        command += ["-k", arguments.keyword]
    command += pytest_arguments
    environment = dict(os.environ)
    paths = [str(REPOSITORY / "python"), str(REPOSITORY / "tests")]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    with open(log, "a") as output:
        output.write(" ".join(command) + "\n")
        output.flush()
        return subprocess.call(
            command, cwd=out, env=environment, stdout=output, stderr=subprocess.STDOUT
        )


def _tests_file(tests: str, out: Path) -> Path:
    """A file of node ids, one a line, from ``--tests``."""
    path = Path(tests).resolve()
    if path.suffix != ".json":
        return path
    nodeids = [entry["nodeid"] for entry in json.loads(path.read_text())["differences"]]
    listed = out / "tests-from-differences.txt"
    listed.write_text("".join(f"{nodeid}\n" for nodeid in nodeids))
    return listed


def _interrupted(path: Path) -> tuple[str | None, list[str], list[str]]:
    """The test a dead session was running, the shared-memory roots of its clusters that are
    still there, and the node ids it finished."""
    running = None
    roots: list[str] = []
    seen: list[str] = []
    with open(path) as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "start" in entry:
                running = entry["start"]
            elif "cluster_root" in entry:
                roots.append(entry["cluster_root"])
            elif "nodeid" in entry:
                seen.append(entry["nodeid"])
                if entry["nodeid"] == running:
                    running = None
    return running, [root for root in roots if os.path.isdir(root)], seen


def _death(log: Path, status: int) -> str:
    """What killed pytest: Python's fatal error line, else the signal."""
    with open(log, errors="replace") as lines:
        fatal = [line for line in lines if "Fatal Python error" in line]
    if fatal:
        return fatal[-1][fatal[-1].index("Fatal Python error") :].strip()
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"exit status {status}"


def _load(path: Path) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if not path.exists():
        return results
    with open(path) as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if "nodeid" not in entry:
                continue  # the session's own lines
            if entry["outcome"] == "failed" and "from pytest-timeout" in entry.get("reason", ""):
                entry["outcome"] = "timeout"
            results[entry["nodeid"]] = entry
    return results


def _complete(path: Path) -> bool:
    """Whether the session wrote its final line (it was not killed halfway)."""
    if not path.exists():
        return False
    with open(path) as lines:
        return any('"session": true' in line for line in lines)


def _reusable(path: Path, arguments: argparse.Namespace) -> bool:
    """Whether Dask's pass in ``path`` ran to its end, with this Dask, on every test (or on
    the same selection as now: same ``-k``, same ``--tests``)."""
    import dask

    if not _complete(path):
        return False
    with open(path) as lines:
        sessions = [json.loads(line) for line in lines if '"session": true' in line]
    session = sessions[-1]
    if session.get("dask") != dask.__version__ or session.get("markexpr"):
        return False
    everything = not session.get("keyword") and session.get("include") is None
    return everything or (
        session.get("keyword") == (arguments.keyword or "")
        and session.get("include") == arguments.include_digest
    )


OUTCOMES = ("passed", "failed", "error", "timeout", "crashed", "skipped", "xfailed", "xpassed")
_HEADER = (
    f"{'module':26} {'pass':16} {'tests':>6} "
    + " ".join(f"{name:>7}" for name in OUTCOMES)
    + f" {'on ours':>7} {'seconds':>8}"
)


def _counts(module: str, name: str, results: dict, seconds: float | None) -> dict:
    counts = dict.fromkeys(OUTCOMES, 0)
    for entry in results.values():
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    on_ours = sum(1 for entry in results.values() if entry.get("ours_calls"))
    return {
        "module": module,
        "pass": name,
        "tests": len(results),
        **counts,
        "on ours": on_ours if name != "dask" else None,
        "seconds": seconds,
    }


def _format_row(row: dict) -> str:
    seconds = "reused" if row["seconds"] is None else f"{row['seconds']:.0f}"
    on_ours = "" if row["on ours"] is None else str(row["on ours"])
    return (
        f"{row['module']:26} {row['pass']:16} {row['tests']:>6} "
        + " ".join(f"{row[name]:>7}" for name in OUTCOMES)
        + f" {on_ours:>7} {seconds:>8}"
    )


if __name__ == "__main__":
    sys.exit(main())
