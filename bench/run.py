"""Benchmark ovpn-toolkit against the manual shell method, easy-rsa and the key-generation floor.

Usage: python bench/run.py [--quick] [--json FILE] [--repeat N] [--timeout S] [--keep]

Makes its own synthetic inputs in a temporary folder, drives the toolkit only through its
command line (``python -m toolkit``, with this interpreter), and prints a table of medians,
minimums and maximums with the targets of the performance issue. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baselines, inputs
from bench.machine import machine_facts
from bench.measure import RunResult, Series, run_measured
from bench.report import Row, Target, measurements_table, seconds, targets_table

REPO = Path(__file__).resolve().parent.parent
CA_VARIABLE = "BENCH_CA_PASSPHRASE"  # holds a random passphrase
JSON_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Sizes:
    assembly: int  # users with PEM credentials, compared with the shell loop
    scaling: int  # the small point of the scaling line (the others: assembly, memory)
    issuance: int  # users whose certificates the CA issues
    memory: int  # the big assembly batch whose memory is sampled
    repeat: int  # repetitions of every timed measurement except the memory run
    startup_runs: int
    distinct_keys: int  # RSA keys shared round-robin by the assembly inputs


FULL = Sizes(
    assembly=1000,
    scaling=100,
    issuance=200,
    memory=10_000,
    repeat=3,
    startup_runs=7,
    distinct_keys=16,
)
QUICK = Sizes(
    assembly=20, scaling=10, issuance=5, memory=50, repeat=1, startup_runs=1, distinct_keys=4
)


@dataclass
class MemoryRun:
    users: int
    finished: bool
    wall_seconds: float
    timeout_seconds: float
    peak_rss_sum_kib: int
    peak_pss_sum_kib: int
    maxrss_largest_kib: int
    peak_processes: int
    samples: int


@dataclass
class Results:
    series: dict[str, Series] = field(default_factory=dict)
    memory: MemoryRun | None = None
    problems: list[str] = field(default_factory=list)

    def get(self, key: str, unit: str = "s") -> Series:
        return self.series.setdefault(key, Series(unit=unit))

    def median(self, key: str) -> float | None:
        series = self.series.get(key)
        return series.median if series and series.values else None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """Every measurement writes to its own folder under ``work``, removed only at the end:
    on ext4 without a journal (this machine's root file system) the kernel skips inodes freed
    in the last minutes when it allocates new ones (``recently_deleted()``, ext4 ialloc.c), one
    buffer lookup per freed inode for every file created, so creating files just after removing
    the previous run's 11 000 costs 5-20x more. Removing between runs would charge the next
    measurement, whichever tool it is, for the one before."""

    def __init__(self, work: Path, sizes: Sizes, timeout: float) -> None:
        self.work = work
        self.sizes = sizes
        self.timeout = timeout
        self.python = sys.executable
        self.results = Results()
        self.env = dict(os.environ)
        self.env[CA_VARIABLE] = secrets.token_urlsafe(24)
        # measured as installed: pip byte-compiles a package when it installs it, so the
        # toolkit runs from .pyc files (compiled once below), not recompiled at every start
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.jobs = os.cpu_count() or 1
        self.inputs: inputs.Inputs | None = None

    # -- running things ------------------------------------------------------------------

    def toolkit(self, *args: str | Path) -> list[str]:
        return [self.python, "-m", "toolkit", *(str(a) for a in args)]

    def run(
        self,
        label: str,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        sample_memory: bool = False,
    ) -> RunResult:
        result = run_measured(
            argv,
            cwd=cwd,
            env=env or self.env,
            timeout=self.timeout,
            sample_memory=sample_memory,
        )
        if not result.ok:
            self.results.problems.append(f"{label}: {result.describe_failure()}")
        return result

    def batch(
        self,
        label: str,
        users_file: Path,
        output: Path,
        *,
        expect: str,
        names: list[str],
        sample_memory: bool = False,
        keep_timeout: bool = False,
    ) -> RunResult | None:
        """One ``batch --json`` run; the result only when every user ended as ``expect``.

        With ``keep_timeout`` a run killed at the timeout is returned too (its memory counts).
        """
        result = self.run(
            label,
            self.toolkit("batch", users_file, "--output", output, "--json"),
            cwd=users_file.parent,
            sample_memory=sample_memory,
        )
        if result.timed_out:
            return result if keep_timeout else None
        if not result.ok and result.returncode != 3:
            return None
        problem = self._check_batch(result, output, expect=expect, names=names)
        if problem is not None:
            self.results.problems.append(f"{label}: {problem}")
            return None
        return result if result.ok else None

    @staticmethod
    def _check_batch(
        result: RunResult, output: Path, *, expect: str, names: list[str]
    ) -> str | None:
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError:
            return "batch --json printed no JSON document"
        counts = document.get("counts", {})
        if counts.get(expect) != len(names):
            failed = [u for u in document.get("users", []) if u.get("status") == "failed"]
            first = f"; first failure: {failed[0].get('reason')}" if failed else ""
            return f"expected {len(names)} users {expect}, got {counts}{first}"
        for name in names:
            # the file to send per target, whatever the naming scheme of this toolkit version
            for folder, pattern in (("ios", "*.ovpn"), ("tunnelblick", "*.tblk.zip")):
                if not any((output / name / folder).glob(pattern)):
                    return f"{output / name / folder}: no {pattern} was written"
        return None

    # -- measurements --------------------------------------------------------------------

    def compile(self) -> None:
        """Byte-compile the toolkit, as ``pip install`` does (not timed)."""
        subprocess.run(
            [self.python, "-m", "compileall", "-q", str(REPO / "toolkit")],
            check=False,
            env=self.env,
            stdout=subprocess.DEVNULL,
        )

    def prepare(self) -> inputs.Inputs:
        count = max(self.sizes.assembly, self.sizes.memory, self.sizes.scaling)
        log(f"inputs: package, root, {count} client certificates ({self.sizes.distinct_keys} keys)")
        self.inputs = inputs.make_inputs(
            self.work / "in", users=count, distinct_keys=self.sizes.distinct_keys, jobs=self.jobs
        )
        log(f"inputs: ready in {self.inputs.setup_seconds:.1f} s (not timed)")
        return self.inputs

    def startup(self, made: inputs.Inputs) -> None:
        runs = self.sizes.startup_runs
        commands = {
            "startup_help": self.toolkit("--help"),
            "startup_inspect": self.toolkit("inspect", made.package),
        }
        for argv in commands.values():  # warm-up: byte-code cache and page cache
            run_measured(argv, cwd=self.work, env=self.env, timeout=self.timeout)
        for index in range(runs):
            for key, argv in commands.items():
                result = self.run(key, argv, cwd=self.work)
                if result.ok:
                    self.results.get(key).add(result.wall_seconds)
            log(
                f"start-up {index + 1}/{runs}: --help "
                f"{seconds(self.results.median('startup_help'))}, "
                f"inspect {seconds(self.results.median('startup_inspect'))} (medians so far)"
            )

    def assembly(self, made: inputs.Inputs, count: int, *, compare: bool) -> None:
        """``count`` users with PEM credentials; with ``compare`` also the re-run and shell loop."""
        users = made.first(count)
        names = [u.name for u in users]
        users_file = inputs.write_assembly_list(made.folder / f"users-{count}.yaml", made, count)
        script, table = baselines.write_shell_loop(self.work / "shell", users)
        for rep in range(self.sizes.repeat):
            tag = f"assembly {count} users, run {rep + 1}/{self.sizes.repeat}"
            output = self.work / "out" / f"assembly-{count}-{rep}"
            result = self.batch(f"{tag}: batch", users_file, output, expect="written", names=names)
            line = f"{tag}: batch {seconds(result.wall_seconds) if result else 'failed'}"
            if result is not None:
                self.results.get(f"assembly_{count}").add(result.wall_seconds)
            if compare and result is not None:
                again = self.batch(
                    f"{tag}: re-run", users_file, output, expect="unchanged", names=names
                )
                if again is not None:
                    self.results.get("rerun").add(again.wall_seconds)
                    line += f", re-run {seconds(again.wall_seconds)}"
            if compare:
                manual = self.work / "out" / f"shell-{count}-{rep}"
                shell = self.run(
                    f"{tag}: shell loop",
                    ["bash", str(script), str(made.template), str(table), str(manual)],
                    cwd=self.work,
                )
                if shell.ok:
                    problem = baselines.check_shell_output(manual, users)
                    if problem is None:
                        self.results.get("shell").add(shell.wall_seconds)
                        line += f", shell loop {seconds(shell.wall_seconds)}"
                    else:
                        self.results.problems.append(f"{tag}: shell loop: {problem}")
            log(line)

    def issuance(self, made: inputs.Inputs) -> None:
        count = self.sizes.issuance
        names = [inputs.user_name(i) for i in range(count)]
        easyrsa_found = baselines.EASYRSA.is_file()
        if not easyrsa_found:
            self.results.problems.append(
                f"easy-rsa: {baselines.EASYRSA} not found (apt-get install easy-rsa)"
            )
        loop = baselines.write_easyrsa_loop(self.work / "easyrsa")
        for rep in range(self.sizes.repeat):
            tag = f"issuance {count} users, run {rep + 1}/{self.sizes.repeat}"
            ca_dir = self.work / "ca" / f"ca-{rep}"
            ca_dir.parent.mkdir(parents=True, exist_ok=True)
            init = self.run(
                f"{tag}: ca init",
                self.toolkit(
                    "ca",
                    "init",
                    "--output",
                    ca_dir,
                    "--cn",
                    "BENCH P2S CA (synthetic)",
                    "--passphrase-env",
                    CA_VARIABLE,
                    "--json",
                ),
                cwd=self.work,
            )
            line = f"{tag}:"
            if init.ok:
                self.results.get("ca_init").add(init.wall_seconds)
                users_file = inputs.write_issuance_list(
                    made.folder / f"issue-{count}-{rep}.yaml",
                    made,
                    ca_dir=ca_dir,
                    passphrase_env=CA_VARIABLE,
                    count=count,
                )
                output = self.work / "out" / f"issuance-{rep}"
                result = self.batch(
                    f"{tag}: batch", users_file, output, expect="written", names=names
                )
                if result is not None:
                    self.results.get("issuance").add(result.wall_seconds)
                    line += f" batch {seconds(result.wall_seconds)}"
            if easyrsa_found:
                elapsed = self._easyrsa(tag, loop, rep, count)
                if elapsed is not None:
                    self.results.get("easyrsa").add(elapsed)
                    line += f", easy-rsa {seconds(elapsed)}"
            floor = baselines.keygen_floor(count, self.jobs)
            self.results.get("keygen_floor").add(floor)
            log(f"{line}, keygen floor {seconds(floor)}")

    def _easyrsa(self, tag: str, loop: Path, rep: int, count: int) -> float | None:
        pki = self.work / "easyrsa" / f"pki-{rep}"
        env = {**self.env, **baselines.easyrsa_env(pki)}
        easyrsa = str(baselines.EASYRSA)
        for step in (["init-pki"], ["build-ca", "nopass"]):
            if not self.run(
                f"{tag}: easyrsa {step[0]}", [easyrsa, *step], cwd=pki.parent, env=env
            ).ok:
                return None
        # build-client-full refuses an EASYRSA_REQ_CN ("does not support setting an
        # external commonName"): the name on its command line is the CN.
        env.pop("EASYRSA_REQ_CN")
        result = self.run(
            f"{tag}: easy-rsa loop",
            ["bash", str(loop), easyrsa, str(count)],
            cwd=pki.parent,
            env=env,
        )
        if not result.ok:
            return None
        issued = len(list((pki / "issued").glob("*.crt")))
        if issued != count:
            self.results.problems.append(f"{tag}: easy-rsa issued {issued} of {count}")
            return None
        return result.wall_seconds

    def memory(self, made: inputs.Inputs) -> None:
        count = self.sizes.memory
        users_file = inputs.write_assembly_list(made.folder / f"users-{count}.yaml", made, count)
        output = self.work / "out" / f"memory-{count}"
        log(f"memory: batch of {count} users (timeout {self.timeout:g} s) ...")
        names = [u.name for u in made.first(count)]
        result = self.batch(
            f"memory {count} users: batch",
            users_file,
            output,
            expect="written",
            names=names,
            sample_memory=True,
            keep_timeout=True,
        )
        if result is None or result.memory is None:
            return
        self.results.memory = MemoryRun(
            users=count,
            finished=not result.timed_out,
            wall_seconds=result.wall_seconds,
            timeout_seconds=self.timeout,
            peak_rss_sum_kib=result.memory.peak_rss_kib,
            peak_pss_sum_kib=result.memory.peak_pss_kib,
            maxrss_largest_kib=result.maxrss_kib,
            peak_processes=result.memory.peak_processes,
            samples=result.memory.samples,
        )
        state = "finished" if not result.timed_out else "did not finish"
        log(
            f"memory: {state} in {seconds(result.wall_seconds)}, "
            f"peak RSS sum {mb(result.memory.peak_rss_kib):.1f} MB"
        )


def mb(kib: int) -> float:
    """KiB (what /proc and ru_maxrss report) to MB (10^6 bytes, the unit of the target)."""
    return kib * 1024 / 1e6


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def targets(results: Results, sizes: Sizes) -> list[Target]:
    shell = results.median("shell")
    assembly = results.median(f"assembly_{sizes.assembly}")
    rerun = results.median("rerun")
    issuance = results.median("issuance")
    floor = results.median("keygen_floor")
    easyrsa = results.median("easyrsa")
    help_s = results.median("startup_help")
    speedup = _ratio(shell, assembly)
    rerun_ms = None if rerun is None else rerun * 1000 / sizes.assembly
    vs_floor = _ratio(issuance, floor)
    vs_easyrsa = _ratio(easyrsa, issuance)
    found = [
        Target(
            "assembly speed-up vs shell loop",
            speedup,
            "x",
            ">= 20x",
            None if speedup is None else speedup >= 20,
            f"shell median / batch median, {sizes.assembly} users",
        ),
        Target(
            "re-run, nothing changed",
            rerun_ms,
            "ms/user",
            "< 1 ms/user",
            None if rerun_ms is None else rerun_ms < 1,
            f"re-run median / {sizes.assembly} users, process start-up included",
        ),
        Target(
            "issuance vs key-generation floor",
            vs_floor,
            "x",
            "<= 1.25x",
            None if vs_floor is None else vs_floor <= 1.25,
            f"batch median / floor median, {sizes.issuance} users",
        ),
        Target(
            "issuance speed-up vs easy-rsa",
            vs_easyrsa,
            "x",
            ">= 10x",
            None if vs_easyrsa is None else vs_easyrsa >= 10,
            f"easy-rsa median / batch median, {sizes.issuance} users",
        ),
    ]
    memory = results.memory
    if memory is None:
        found.append(Target("peak RSS, all processes", None, "MB", "<= 200 MB", None, "failed"))
    elif not memory.finished:
        found.append(
            Target(
                "peak RSS, all processes",
                mb(memory.peak_rss_sum_kib),
                "MB",
                "<= 200 MB",
                False if mb(memory.peak_rss_sum_kib) > 200 else None,
                f"{memory.users} users: did not finish within {memory.timeout_seconds:g} s "
                "(peak until then)",
            )
        )
    else:
        found.append(
            Target(
                "peak RSS, all processes",
                mb(memory.peak_rss_sum_kib),
                "MB",
                "<= 200 MB",
                mb(memory.peak_rss_sum_kib) <= 200,
                f"{memory.users} users, sum of VmRSS over the process tree",
            )
        )
    found.append(
        Target(
            "ovpn-toolkit --help",
            help_s,
            "s",
            "< 0.25 s",
            None if help_s is None else help_s < 0.25,
            "median wall time of python -m toolkit --help",
        )
    )
    return found


def rows(results: Results, sizes: Sizes) -> list[Row]:
    def row(label: str, key: str, users: int | None, note: str = "") -> Row:
        series = results.series.get(key)
        if series is None or not series.values:
            return Row(label, users, None, note="not measured")
        return Row(label, users, series.median, series.low, series.high, len(series.values), note)

    found = [
        row("start-up: --help", "startup_help", None),
        row("start-up: inspect PKG", "startup_inspect", None),
        row("assembly: batch", f"assembly_{sizes.assembly}", sizes.assembly, "tunnelblick + ios"),
        row("assembly: shell loop", "shell", sizes.assembly, "openssl + 2x awk per user"),
        row("re-run: batch, unchanged", "rerun", sizes.assembly, "start-up included"),
        row("scaling: batch", f"assembly_{sizes.scaling}", sizes.scaling, "tunnelblick + ios"),
        row("issuance: ca init", "ca_init", None, "root key + certificate"),
        row("issuance: batch with ca", "issuance", sizes.issuance, "keys issued by the CA"),
        row("issuance: easy-rsa", "easyrsa", sizes.issuance, "build-client-full per user"),
        row("issuance: keygen floor", "keygen_floor", sizes.issuance, "RSA-2048, pool, in-process"),
    ]
    memory = results.memory
    if memory is not None:
        note = (
            "memory run"
            if memory.finished
            else (f"did not finish within {memory.timeout_seconds:g} s")
        )
        found.append(
            Row(
                "memory: batch",
                memory.users,
                memory.wall_seconds,
                memory.wall_seconds,
                memory.wall_seconds,
                1,
                note,
            )
        )
    return found


def scaling(results: Results, sizes: Sizes) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for count in (sizes.scaling, sizes.assembly):
        wall = results.median(f"assembly_{count}")
        points.append({"users": count, "seconds": wall, "finished": wall is not None})
    memory = results.memory
    points.append(
        {
            "users": sizes.memory,
            "seconds": memory.wall_seconds if memory else None,
            "finished": bool(memory and memory.finished),
            "timeout": memory.timeout_seconds if memory else None,
        }
    )
    return points


def render(
    facts: dict[str, Any],
    made: inputs.Inputs | None,
    results: Results,
    sizes: Sizes,
    *,
    quick: bool,
    total: float,
) -> str:
    out = [f"# ovpn-toolkit benchmark ({'--quick' if quick else 'full'})", ""]
    out.append(
        f"machine: {facts['cpu_model']}, {facts['cpu_count']} CPUs "
        f"({facts['usable_cpus']} usable), {facts['memory_mib']} MiB, Linux {facts['kernel']}, "
        f"load average {facts['load_average'][0]:.2f} at start, "
        f"{facts['load_average_end'][0]:.2f} at the end"
    )
    out.append(
        f"software: Python {facts['python']} at {facts.get('python_base', '?')}, "
        f"cryptography {facts['cryptography']}, "
        f"{facts['openssl']}, easy-rsa {facts['easy_rsa']}, {facts['bash']}"
    )
    out.append(
        f"toolkit: {facts['toolkit']} (commit {facts['toolkit_commit']}), batch --jobs default"
    )
    if made is not None:
        out.append(
            f"inputs: {len(made.users)} client certificates (RSA-2048, clientAuth) from a "
            f"synthetic root, sharing {made.distinct_keys} keys round-robin (assembly measures "
            f"assembly, not key generation); made in {made.setup_seconds:.1f} s, not timed"
        )
    out += ["", *measurements_table(rows(results, sizes)), ""]
    memory = results.memory
    if memory is not None:
        state = (
            f"finished in {seconds(memory.wall_seconds)}"
            if memory.finished
            else f"did not finish within {memory.timeout_seconds:g} s (values until then)"
        )
        out.append(
            f"memory ({memory.users} users, {state}): peak RSS summed over the process tree "
            f"{mb(memory.peak_rss_sum_kib):.1f} MB (PSS {mb(memory.peak_pss_sum_kib):.1f} MB), "
            f"largest single process (ru_maxrss) {mb(memory.maxrss_largest_kib):.1f} MB, "
            f"up to {memory.peak_processes} processes, {memory.samples} samples"
        )
    parts = []
    for point in scaling(results, sizes):
        if point["seconds"] is None:
            parts.append(f"{point['users']} users: not measured")
        elif not point["finished"]:
            parts.append(
                f"{point['users']} users: did not finish within {seconds(point['timeout'])}"
            )
        else:
            per_user = point["seconds"] * 1000 / point["users"]
            parts.append(
                f"{point['users']} users {seconds(point['seconds'])} ({per_user:.1f} ms/user)"
            )
    out += [f"scaling (batch wall time): {'; '.join(parts)}", ""]
    out += targets_table(targets(results, sizes))
    if quick:
        out.append("--quick: tiny sizes, one run each; the verdicts are not the issue's.")
    if results.problems:
        out += ["", "problems:"] + [f"- {p}" for p in results.problems]
    out += ["", f"total benchmark time: {total:.0f} s"]
    return "\n".join(out)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path = path.resolve()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2)
        stream.write("\n")
    os.replace(temporary, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark ovpn-toolkit (assembly, re-run, issuance, memory, start-up).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each (CI)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        metavar="S",
        help="seconds any one command may take (default 1800)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--tmpdir", type=Path, help="where to make the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeat is not None:
        if args.repeat < 1:
            log("ERROR: --repeat must be at least 1")
            return 2
        sizes = Sizes(**{**asdict(sizes), "repeat": args.repeat})
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ovpn-bench-", dir=args.tmpdir))
    facts = machine_facts(sys.executable, REPO)
    bench = Bench(work, sizes, args.timeout)
    made: inputs.Inputs | None = None
    try:
        bench.compile()
        made = bench.prepare()
        bench.startup(made)
        bench.assembly(made, sizes.assembly, compare=True)
        bench.assembly(made, sizes.scaling, compare=False)
        bench.issuance(made)
        bench.memory(made)
    except KeyboardInterrupt:
        bench.results.problems.append("interrupted")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    facts["load_average_end"] = list(os.getloadavg())
    results = bench.results
    print(render(facts, made, results, sizes, quick=args.quick, total=total))
    if args.json is not None:
        write_json(
            args.json,
            {
                "schema_version": JSON_SCHEMA_VERSION,
                "mode": "quick" if args.quick else "full",
                "sizes": asdict(sizes),
                "timeout_seconds": args.timeout,
                "machine": facts,
                "inputs": None
                if made is None
                else {
                    "users": len(made.users),
                    "distinct_keys": made.distinct_keys,
                    "setup_seconds": made.setup_seconds,
                },
                "measurements": {k: s.to_json() for k, s in results.series.items()},
                "memory": None if results.memory is None else asdict(results.memory),
                "scaling": scaling(results, sizes),
                "targets": [t.to_json() for t in targets(results, sizes)],
                "problems": results.problems,
                "total_seconds": total,
            },
        )
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
