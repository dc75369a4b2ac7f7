"""Break each promise of DESIGN §7 in a throwaway copy of the code, one at a time, and
show that the suite notices.

    python bench/mutations.py [--ref HEAD] [--only NAME ...] [--keep] [--list]

A test suite proves a promise only if breaking the promise makes a test fail. Each
mutation below is a named text replacement in ``src/`` that breaks one promise (the
issue-23 audit's four first, then one or more per remaining promise), with the part of
the suite that speaks for that promise. The script

1. exports ``--ref`` (default ``HEAD``: committed code only, nobody's edit in flight)
   into a fresh folder under the system's temp dir (``git archive``; the repository
   is not touched, no worktree is registered);
2. runs every selection once on the unmutated copy (the baseline: a selection that
   fails there proves nothing, and the run stops);
3. for each mutation: applies it (each ``old`` text must occur exactly once, else the
   mutation is reported as stale: the code moved on and the mutation must follow),
   runs its selection, restores the file;
4. prints a table: mutation, the promise, the tests run, whether any failed (caught).

Tests run with this checkout's ``.venv`` and ``PYTHONPATH=<copy>/src`` (the venv's
editable install is a plain path entry, which ``PYTHONPATH`` precedes), so the
``trilha`` processes the acceptance tests start import the mutated code too. The
PostgreSQL selections start their own throwaway server (tests/pgcluster.py). The
whole run takes about 4 minutes on two idle cores (10 on a busy machine). Exit
status: 0 when every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
#: a selection that runs longer than this counts as not caught (it hung)
RUN_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    #: the promise it breaks, in DESIGN's words (§7, and §4/§5 where they spell it out)
    promise: str
    file: str
    #: (old, new) text replacements in ``file``; each ``old`` occurs exactly once
    edits: tuple[tuple[str, str], ...]
    #: pytest arguments: the part of the suite that speaks for the promise
    tests: tuple[str, ...]


CORRUPTED_AT_CLAIM_PG = """\
                except CorruptedRecord as exc:
                    eid = row["id"]
                    await _quarantine(conn, eid, "execution", str(exc), row, now)
                    claimed.append(Claimed(salvage(row), corruption=str(exc), taken_from=previous))
                    wanting.append(eid)
                    continue
"""
CORRUPTED_AT_CLAIM_SQLITE = """\
                except CorruptedRecord as exc:
                    _quarantine(conn, eid, "execution", str(exc), row, now)
                    claimed.append(
                        Claimed(
                            salvage(row),
                            _pending_inbound(conn, eid),
                            corruption=str(exc),
                            taken_from=previous,
                        )
                    )
                    continue
"""
SKIPPED = """\
                except CorruptedRecord:
                    continue
"""

MUTATIONS = [
    # -- the audit's four ---------------------------------------------------------------
    Mutation(
        "pg-corrupted-at-claim-skipped",
        "no committed step is lost: a corrupted row is quarantined and restored (§4)",
        "src/trilha/store/postgres.py",
        ((CORRUPTED_AT_CLAIM_PG, SKIPPED),),
        ("tests/contract/test_corruption.py", "-k", "postgresql"),
    ),
    Mutation(
        "sqlite-commit-fence-and-renewal-removed",
        "at most once per step: a dead worker's late commit fails (§4 fencing)",
        "src/trilha/store/sqlite.py",
        (
            (
                '" WHERE id = ? AND fencing_token = ? AND lease_owner = ?"',
                '" WHERE id = ? AND ? IS NOT NULL AND ? IS NOT NULL"',
            ),
            (
                '" WHERE id = ? AND lease_owner = ? AND fencing_token = ?",',
                '" WHERE id = ? AND ? IS NOT NULL AND ? IS NOT NULL",',
            ),
        ),
        (
            "tests/acceptance/test_crash_safety.py::"
            "test_a_frozen_worker_cannot_commit_after_losing_its_lease",
        ),
    ),
    Mutation(
        "sqlite-commit-fence-removed",
        "at most once per step: a dead worker's late commit fails (§4 fencing)",
        "src/trilha/store/sqlite.py",
        (
            (
                '" WHERE id = ? AND fencing_token = ? AND lease_owner = ?"',
                '" WHERE id = ? AND ? IS NOT NULL AND ? IS NOT NULL"',
            ),
        ),
        (
            "tests/acceptance/test_crash_safety.py::"
            "test_a_frozen_worker_cannot_commit_after_losing_its_lease",
        ),
    ),
    Mutation(
        "sqlite-fencing-token-check-alone",
        "at most once per step: a dead worker's late commit fails (§4 fencing)",
        "src/trilha/store/sqlite.py",
        (
            (
                '" WHERE id = ? AND fencing_token = ? AND lease_owner = ?"',
                '" WHERE id = ? AND ? IS NOT NULL AND lease_owner = ?"',
            ),
        ),
        ("tests/contract/test_commit.py", "-k", "sqlite"),
    ),
    Mutation(
        "pg-fencing-token-check-alone",
        "at most once per step: a dead worker's late commit fails (§4 fencing)",
        "src/trilha/store/postgres.py",
        (
            (
                ' AND fencing_token = ${len(COMMIT_FIELDS) + 4}"',
                ' AND ${len(COMMIT_FIELDS) + 4}::bigint IS NOT NULL"',
            ),
        ),
        ("tests/contract/test_commit.py", "-k", "postgresql"),
    ),
    Mutation(
        "formatted-cpf-cnpj-unmasked",
        "the trail is masked: personal data never reaches a log sink (§5)",
        "src/trilha/observability/masking.py",
        (
            (
                '_CNPJ = r"[0-9]{2}\\.[0-9]{3}\\.[0-9]{3}/[0-9]{4}-[0-9]{2}'
                '|[0-9]{8}/[0-9]{4}-[0-9]{2}"',
                '_CNPJ = r"[0-9]{8}/[0-9]{4}-[0-9]{2}"',
            ),
            (
                '_CPF = r"[0-9]{3}\\.[0-9]{3}\\.[0-9]{3}-[0-9]{2}|[0-9]{9}-[0-9]{2}"',
                '_CPF = r"[0-9]{9}-[0-9]{2}"',
            ),
        ),
        # the sink tests alone: the unit tests of masking caught it before issue 23
        ("tests/integration/test_masking_sinks.py", "tests/integration/test_process_logs.py"),
    ),
    # -- one or more per remaining promise ------------------------------------------------
    Mutation(
        "sqlite-corrupted-at-claim-skipped",
        "no committed step is lost: a corrupted row is quarantined and restored (§4)",
        "src/trilha/store/sqlite.py",
        ((CORRUPTED_AT_CLAIM_SQLITE, SKIPPED),),
        ("tests/contract/test_corruption.py", "-k", "sqlite"),
    ),
    Mutation(
        "sqlite-reply-not-handed-out",
        "no acknowledged inbound message is lost",
        "src/trilha/store/sqlite.py",
        (
            (
                "                    inbound = _pending_inbound(conn, eid)\n",
                "                    inbound = None\n",
            ),
        ),
        ("tests/contract/test_inbox.py", "tests/contract/test_commit.py", "-k", "sqlite"),
    ),
    Mutation(
        "sqlite-checkpoint-not-written",
        "no committed step is lost",
        "src/trilha/store/sqlite.py",
        (
            (
                "            if commit.checkpoints:\n                conn.executemany(\n"
                '                    "INSERT INTO checkpoints VALUES',
                "            if False:\n                conn.executemany(\n"
                '                    "INSERT INTO checkpoints VALUES',
            ),
        ),
        ("tests/contract/test_commit.py", "tests/contract/test_persistence.py", "-k", "sqlite"),
    ),
    Mutation(
        "sqlite-outbox-lease-ignored",
        "a message is delivered at most once per step",
        "src/trilha/store/sqlite.py",
        (
            (
                '" AND (o.lease_expires_at IS NULL OR o.lease_expires_at < ?"',
                '" AND (1 OR o.lease_expires_at < ?"',
            ),
        ),
        ("tests/contract/test_outbox.py", "-k", "sqlite"),
    ),
    Mutation(
        "failed-delivery-given-up-at-once",
        "a message is delivered at least once unless the execution ends first",
        "src/trilha/engine/dispatcher.py",
        (("        if attempts < self.max_attempts:\n", "        if False:\n"),),
        ("tests/integration/test_delivery_failures.py",),
    ),
    Mutation(
        "wait-without-due-time",
        "every execution ends or waits on something named with a due time",
        "src/trilha/engine/engine.py",
        (
            (
                "        ex.waiting_for, ex.due_at, ex.wake_at = what, due, due\n",
                "        ex.waiting_for, ex.due_at, ex.wake_at = what, None, None\n",
            ),
        ),
        ("tests/integration/test_engine.py", "tests/integration/test_sweeper.py"),
    ),
    Mutation(
        "error-cause-dropped",
        "every failure leaves a log trail from which the cause can be read",
        "src/trilha/engine/turn.py",
        (('        "message": str(exc),\n', '        "message": type(exc).__name__,\n'),),
        (
            "tests/integration/test_failure_trail.py",
            "tests/integration/test_first_error.py",
            "tests/integration/test_recovery.py",
        ),
    ),
    Mutation(
        "listings-span-every-institution",
        "a tenant's API key sees only that tenant's executions",
        "src/trilha/api/auth.py",
        (
            (
                "        return None if self.admin else self.institution_id\n",
                "        return None\n",
            ),
        ),
        ("tests/acceptance/test_api_tenancy.py", "tests/acceptance/test_tenant_isolation.py"),
    ),
    Mutation(
        "any-key-sees-any-institution",
        "a tenant's API key sees only that tenant's executions",
        "src/trilha/api/auth.py",
        (
            (
                "        return self.admin or institution_id == self.institution_id\n",
                "        return True\n",
            ),
        ),
        ("tests/acceptance/test_api_tenancy.py", "tests/acceptance/test_tenant_isolation.py"),
    ),
]


@dataclasses.dataclass
class Outcome:
    ran: int
    failed: int
    seconds: float
    tail: str

    @property
    def caught(self) -> bool:
        return self.failed > 0


def export(ref: str) -> Path:
    """``ref``'s tree in a fresh temporary folder (the repository is left alone)."""
    folder = Path(tempfile.mkdtemp(prefix="trilha-mutations-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run(copy: Path, tests: tuple[str, ...]) -> Outcome:
    """Run a selection in ``copy``; how many tests ran and how many failed or errored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRILHA_", "PYTEST_"))}
    env["PYTHONPATH"] = str(copy / "src")
    env["HYPOTHESIS_PROFILE"] = "ci"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return Outcome(0, 1, time.monotonic() - started, f"timed out after {RUN_TIMEOUT} s")
    seconds = time.monotonic() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    ran = failed + counts.get("passed", 0)
    if done.returncode not in (0, 1) and failed == 0:  # collection error, crash, no tests
        failed = 1
    return Outcome(ran, failed, seconds, "\n".join(done.stdout.splitlines()[-15:]))


def apply(copy: Path, mutation: Mutation) -> str | None:
    """Apply ``mutation`` in ``copy``; the file's original text, or ``None`` when a
    replacement's ``old`` text does not occur exactly once (a stale mutation)."""
    path = copy / mutation.file
    original = path.read_text(encoding="utf-8")
    text = original
    for old, new in mutation.edits:
        if text.count(old) != 1:
            return None
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return original


def selection(tests: tuple[str, ...]) -> str:
    return " ".join(t.removeprefix("tests/") for t in tests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help="the commit to mutate (default HEAD)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these mutations")
    parser.add_argument("--keep", action="store_true", help="keep the copy afterwards")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name:42} {m.promise}")
        return 0 if args.list else 2

    copy = export(args.ref)
    print(f"copy of {args.ref} in {copy}", flush=True)
    try:
        baseline_tests: list[str] = []
        for m in chosen:  # one run per distinct selection (a -k applies to a whole run)
            if selection(m.tests) not in baseline_tests:
                baseline_tests.append(selection(m.tests))
                base = run(copy, m.tests)
                print(f"baseline  {selection(m.tests)}: {base.ran} ran, {base.failed} failed"
                      f" ({base.seconds:.0f} s)", flush=True)  # fmt: skip
                if base.failed:
                    print(base.tail)
                    print("the unmutated code fails this selection: nothing can be shown")
                    return 1
        rows: list[tuple[Mutation, Outcome | None]] = []
        for m in chosen:
            original = apply(copy, m)
            if original is None:
                print(f"mutation  {m.name}: STALE (its text is not in {m.file})", flush=True)
                rows.append((m, None))
                continue
            try:
                outcome = run(copy, m.tests)
            finally:
                (copy / m.file).write_text(original, encoding="utf-8")
            print(f"mutation  {m.name}: {outcome.failed} of {outcome.ran} failed"
                  f" ({outcome.seconds:.0f} s)", flush=True)  # fmt: skip
            rows.append((m, outcome))
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)

    print()
    print("| mutation | promise | tests run | failed (caught) |")
    print("|---|---|---|---|")
    for m, outcome in rows:
        if outcome is None:
            print(f"| {m.name} | {m.promise} | `{selection(m.tests)}` | stale: not applied |")
            continue
        verdict = f"yes ({outcome.failed} of {outcome.ran})" if outcome.caught else "NO"
        print(f"| {m.name} | {m.promise} | `{selection(m.tests)}` ({outcome.ran}) | {verdict} |")
    missed = [m.name for m, outcome in rows if outcome is None or not outcome.caught]
    if missed:
        print(f"\nnot caught: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
