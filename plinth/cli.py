"""The `plinth` command. On the offline engine: validate, plan, render, images, check, report, diff,
schema, and the canary edits; online, against a running platform: verify, lineage (and `canary ... --gate`).

Exit codes: 0 success; 1 `diff --exit-code` found changes, `check` found a mandatory violation,
`verify` found a failing track, `lineage` a finding, `canary ... --gate` a canary worse than stable (or an
internal error); 2 bad input (invalid spec, unknown stack,
bad arguments, unreadable or unwritable files). Bad input never prints a traceback.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from plinth.plan import plural
from plinth.spec.errors import SpecError, SpecInvalid

if TYPE_CHECKING:  # the commands import the spec lazily (a quick --help)
    from plinth.plan import Resource
    from plinth.spec.models import PlatformSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: flags read `--json`, options `--out PATH` (the rich panels label every flag `<bool>`).
    rich_markup_mode=None,
    help="Plinth: one platform spec -> a governed ML platform. Offline verbs need no cloud and no cluster.",
)

DEFAULT_BLUEPRINT = Path("blueprints/minimal.yaml")
MAX_PLAN_BYTES = 512 << 20
"""A plan file `diff` reads (the plan of a spec at the teams and models limits is 186 MB of JSON)."""
MAX_REPORT_BYTES = 64 << 20
"""A report.json `report --since` reads (its largest part, the access matrix, grows with the teams)."""
BlueprintArg = Annotated[
    Path | None,
    typer.Argument(help="Blueprint YAML. Default: blueprints/minimal.yaml of the project (unless --stack)."),
]
StackOpt = Annotated[
    str | None, typer.Option("--stack", "-s", help="Use stacks/Pulumi.<NAME>.yaml (blueprint + overrides).")
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"plinth {version('plinth')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print Plinth's version and exit.")] = False,
) -> None:
    """Plinth: one platform spec -> a governed ML platform. Offline verbs need no cloud and no cluster."""


def _out_dir(value: Path | None) -> Path | None:
    """`--out` of plan and render, checked while the arguments are parsed: before any work is done."""
    from plinth.plan import OutputError, check_out_dir

    if value is not None:
        try:
            check_out_dir(value)
        except OutputError as exc:
            raise SpecInvalid([SpecError(None, "--out", str(exc))]) from None
    return value


def _err(message: str) -> None:
    typer.echo(message, err=True)


def project_dir() -> Path:
    """The nearest directory at or above the working directory holding Pulumi.yaml."""
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise SpecInvalid([SpecError(None, "", "no Pulumi.yaml here or above: run inside a Plinth project")])


def _load(blueprint: Path | None, stack: str | None):
    """(spec, source label) for the verbs' common inputs."""
    from plinth.spec.load import load_spec, read_stack

    if blueprint and stack:
        raise SpecInvalid([SpecError(None, "", "give a blueprint or --stack, not both")])
    if stack is not None:
        path, overrides = read_stack(project_dir(), stack)
        return load_spec(path, overrides), f"stack:{stack}"
    if blueprint is None:
        blueprint = project_dir() / DEFAULT_BLUEPRINT
        source = str(DEFAULT_BLUEPRINT)
    else:
        source = str(blueprint)
    return load_spec(blueprint), source


def _stage(stack: str | None, stage: str | None) -> str:
    """The stage to plan: a stack's own (a configure stack names the stack it configures), else --stage."""
    from plinth.spec.load import stack_stage

    if stack is None:
        return stage or "platform"
    own = stack_stage(project_dir(), stack)
    if stage and stage != own:
        raise SpecInvalid([SpecError(None, "--stage", f"stack {stack!r} is a {own} stack, not {stage}")])
    return own


def _plan(blueprint: Path | None, stack: str | None, stage: str | None = None, progress: bool = True):
    spec, source = _load(blueprint, stack)
    return _plan_spec(spec, source, stack, _stage(stack, stage), progress)


def _provenance(source: str):
    """The files behind a source label (`stack:NAME` or a blueprint path), for the platform ledger."""
    from plinth.provenance import Provenance
    from plinth.spec.load import read_stack

    if source.startswith("stack:"):
        name = source.removeprefix("stack:")
        blueprint, _ = read_stack(project_dir(), name)
        return Provenance.of(blueprint, project_dir() / "stacks" / f"Pulumi.{name}.yaml")
    path = Path(source)
    return Provenance.of(path if path.is_file() else project_dir() / path)


def _plan_spec(spec: PlatformSpec, source: str, stack: str | None, stage: str = "platform", progress: bool = True,
               on_record: Callable[[Resource], None] | None = None):
    """The spec's plan and the seconds it took; `on_record` is called with each resource as the plan records it."""
    from plinth.engine.offline import plan

    started = time.perf_counter()
    provenance = _provenance(source)
    if not (progress and sys.stderr.isatty()):
        return (plan(spec, source, stack=stack or "offline", stage=stage, provenance=provenance, on_record=on_record),
                time.perf_counter() - started)
    from rich.console import Console

    # Large platforms take a while offline: show a live count on the terminal.
    with Console(stderr=True).status(f"planning {source}") as status:
        count = itertools.count(1)

        def recorded(res: Resource) -> None:
            status.update(f"planning {source}: {next(count)} resources")
            if on_record:
                on_record(res)

        result = plan(spec, source, stack=stack or "offline", stage=stage, provenance=provenance, on_record=recorded)
    return result, time.perf_counter() - started


@app.command()
def validate(blueprint: BlueprintArg = None, stack: StackOpt = None) -> None:
    """Check a spec: schema, merge and cross-field rules; with --stack also the stack file's keys (all errors at
    once) and the stack secrets the spec needs that the stack lacks. Exit 2 with every error found."""
    if blueprint and stack:
        raise SpecInvalid([SpecError(None, "", "give a blueprint or --stack, not both")])
    missing: list[str] = []
    if stack is not None:
        from plinth.stackconfig import check_stack

        (spec, missing), source = check_stack(project_dir(), stack), f"stack:{stack}"
    else:
        spec, source = _load(blueprint, None)
    typer.echo(f"{source}: valid ({spec.metadata.name}, {spec.metadata.environment}, {len(spec.teams)} teams)")
    if missing:
        typer.echo(f"stack {stack} lacks {plural(len(missing), 'secret')} its spec needs (`pulumi up` stops "
                   "without them); set them with:")
        typer.echo("\n".join(f"  {command}" for command in missing))


@app.command()
def plan(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write DIR/plan.json.", callback=_out_dir)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON instead of the tree.")] = False,
    stage: Annotated[str | None, typer.Option(
        help="platform (the cluster and its services) or configure (Vault and Harbor contents, run once they "
             "are up). Default: the stack's own stage, else platform.")] = None,
) -> None:
    """Run the program offline and show every resource it declares."""
    from plinth.plan import OutputError, tree_lines

    if stage not in (None, "platform", "configure"):
        raise SpecInvalid([SpecError(None, "--stage", f"{stage!r}: expected platform or configure")])
    result, seconds = _plan(blueprint, stack, stage)
    if as_json:
        sys.stdout.write(result.to_json())
    elif not result.resources and _stage(stack, stage) == "configure":
        from plinth.program import CONFIGURATION

        parts = ", ".join(name for name, _ in CONFIGURATION)
        typer.echo(f"nothing to configure in {result.source}: every part of the configure stage ({parts}) is off, "
                   "with the services it configures")
    else:
        typer.echo("\n".join(tree_lines(result)))
        counts = ", ".join(f"{n} {t.rsplit(':', 1)[-1]}" for t, n in result.counts().items())
        typer.echo(f"\n{counts}\nplanned in {seconds:.2f}s")
    if out:
        try:
            path = result.write(out)
        except OutputError as exc:  # changed since the up-front check
            raise SpecInvalid([SpecError(None, "--out", str(exc))]) from None
        _err(f"wrote {path}")


@app.command()
def render(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    out: Annotated[Path, typer.Option(help="Directory for the manifests (created; earlier renders replaced).",
                                      callback=_out_dir)] = ...,  # type: ignore[assignment]  # typer: required
    charts: Annotated[Path | None, typer.Option(
        help="Directory chart source (DIR/charts/<name>-<version>.tgz, DIR/crds/<bundle>/) to render the real "
             "charts from. Default: the spec's charts.source when it is a directory.")] = None,
) -> None:
    """Write every Kubernetes object: Plinth's own, and every object of each Helm release's real chart."""
    from plinth.render import render as render_plan

    if charts is not None and not charts.is_dir():
        raise SpecInvalid([SpecError(None, "--charts", f"{charts}: not a directory")])
    spec, source = _load(blueprint, stack)
    result, rendered = _plan_and_render(spec, source, stack, "platform", charts or _local_source(spec), written=True)
    from plinth.render import RenderError

    try:
        files = render_plan(result, out, rendered)
    except RenderError as exc:
        raise SpecInvalid([SpecError(None, "--out", str(exc))]) from None
    for path in files:
        typer.echo(str(path))
    for item in rendered:
        if item.note:
            _err(f"note: {item.resource.name}: {item.note}")
    objects = sum(len(item.objects) for item in rendered)
    _err(f"rendered {plural(len(files), 'file')} to {out} "
         f"({plural(objects, 'object')} from {plural(sum(bool(i.objects) for i in rendered), 'chart')})")


def _plan_and_render(spec: PlatformSpec, source: str, stack: str | None, stage: str, directory: Path | None,
                     written: bool = False):
    """The plan and every chart of it rendered (render and check alike), each chart as soon as the plan declares
    its release: progress on a terminal, and values a chart rejects are bad input naming their spec key (exit 2).
    `written`: with each object as `render` writes it."""
    from plinth.engine.charts import ChartRejected, ChartRenders

    with ChartRenders(spec.kubernetes.version, directory, written) as charts:
        result, _ = _plan_spec(spec, source, stack, stage, on_record=charts.start)
        try:
            return result, charts.collect(result, _progress())
        except ChartRejected as exc:
            raise SpecInvalid([SpecError(None, _values_key(exc), str(exc))]) from None


def _progress():
    """On a terminal, one updating stderr line per chart being rendered; nothing when stderr is piped."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, name: str) -> None:
        line = f"rendering charts: {done + 1}/{total} {name}" if done < total else ""
        sys.stderr.write(f"\r{line}\033[K")
        sys.stderr.flush()

    return show


def _values_key(rejected) -> str:
    """The spec path of the `values` key a chart rejected: <service block>.values.<key>."""
    from plinth.modules.helm import HelmService
    from plinth.program import SERVICES

    for _, service in SERVICES:
        if isinstance(service, type) and issubclass(service, HelmService) and \
                service.chart().archive == rejected.archive.name:
            return ".".join((*service.spec_path, "values", *filter(None, rejected.key.split("."))))
    return rejected.key


def _local_source(spec: PlatformSpec) -> Path | None:
    """The spec's chart source when it is a directory (decided where the program decides it)."""
    from plinth.context import PlatformContext
    from plinth.modules.helm import source_kind

    source = PlatformContext.from_spec(spec).chart_source
    return Path(source) if source_kind(source) == "directory" else None  # type: ignore[arg-type]  # a directory


@app.command()
def images(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="text (one line per artifact: `image SOURCE TARGET`, "
                                     "`chart REPOSITORY NAME VERSION TARGET`, `bundle URL TARGET`; TARGET `-`: "
                                     "pulled from its source) or json.")] = "text",
) -> None:
    """Everything to mirror for this spec: every image (with tag/digest), chart (with version) and CRD bundle,
    each with where the platform pulls it from in air-gap mode."""
    from plinth.mirror import mirror_list

    if fmt not in ("text", "json"):
        raise SpecInvalid([SpecError(None, "--format", f"expected text or json, got {fmt!r}")])
    spec, _ = _load(blueprint, stack)
    listing = mirror_list(spec)
    sys.stdout.write(listing.to_json() if fmt == "json" else listing.to_text())
    why = listing.why_empty(spec)
    if why:
        _err(why)


@app.command()
def check(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    charts: Annotated[Path | None, typer.Option(
        help="Directory chart source (DIR/charts/<name>-<version>.tgz, DIR/crds/<bundle>/) to render the charts "
             "from, so the policies see every object they create. Default: the spec's charts.source when it is a "
             "directory; otherwise chart objects are not inspected (said on stderr).")] = None,
) -> None:
    """Run the policy pack over the offline plan and every object the charts render (the same policies
    `pulumi preview --policy-pack policies` runs); exit 1 on a violation of a mandatory policy.
    Levels: stacks/policy.<stack>.json."""
    from plinth.governance.check import as_json as results_json
    from plinth.governance.check import check as run_checks
    from plinth.governance.check import policy_config, with_locations

    if charts is not None and not charts.is_dir():
        raise SpecInvalid([SpecError(None, "--charts", f"{charts}: not a directory")])
    try:
        config_file, levels = policy_config(project_dir(), stack)
    except ValueError as exc:
        raise SpecInvalid([SpecError(None, "policy", str(exc))]) from None
    spec, source = _load(blueprint, stack)
    directory = charts or _local_source(spec)
    if directory:
        result, rendered = _plan_and_render(spec, source, stack, _stage(stack, None), directory)
    else:
        result, rendered = _plan_spec(spec, source, stack, _stage(stack, None))[0], []
    results = with_locations(run_checks(result, levels, rendered), spec, _tree(blueprint, stack))
    if as_json:
        sys.stdout.write(results_json(results))
    else:
        typer.echo("\n".join(check_lines(results, config_file)))
    for line in uninspected(result, rendered, directory):
        _err(line)
    if any(r.failed for r in results):
        raise typer.Exit(1)


def uninspected(result, rendered, directory: Path | None) -> list[str]:
    """What the policies did not see: the charts that were not rendered, and why."""
    from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE

    if directory is None:
        releases = [r.name for r in result.resources if r.type in (HELM_RELEASE, CONFIG_GROUP)]
        if not releases:
            return []
        return [f"note: chart objects were not inspected ({plural(len(releases), 'chart')}: only their values); "
                "pass --charts DIR (a directory chart source) to render and check every object they create"]
    notes = [f"note: {item.resource.name}: chart objects not inspected: {item.note}" for item in rendered if item.note]
    inspected = sum(len(item.objects) for item in rendered)
    return [*notes, f"inspected {plural(inspected, 'chart object')} from "
                    f"{plural(sum(bool(item.objects) for item in rendered), 'chart')} ({directory})"]


def _tree(blueprint: Path | None, stack: str | None):
    """The merged spec tree with every value's file:line, for pointing findings at the key that set them."""
    from plinth.spec.load import load_blueprint_tree, read_stack
    from plinth.spec.yamltree import merge

    if stack is not None:
        path, overrides = read_stack(project_dir(), stack)
        tree = load_blueprint_tree(path)
        return merge(tree, overrides) if overrides else tree
    return load_blueprint_tree(blueprint or project_dir() / DEFAULT_BLUEPRINT)


def check_lines(results, config_file: Path | None) -> list[str]:
    width = max(len(r.policy.name) for r in results)
    lines = [f"{r.policy.name:<{width}}  {r.level:<9}  "
             f"{'ok' if not r.violations else plural(len(r.violations), 'violation')}" for r in results]
    for r in (r for r in results if r.violations):
        lines += ["", f"[{r.level}] {r.policy.name}: {r.policy.description}", f"  fix: {r.policy.remediation}"]
        for v in r.violations:
            lines.append(f"  - {v.subject}: {v.message}")
            if v.values_key:
                lines.append(f"      values {v.release}: {v.values_key}" + (f" ({v.at})" if v.at else ""))
    failed = sum(r.failed for r in results)
    levels = f" (levels from {config_file})" if config_file else ""
    verdict = f"{failed} mandatory {'policy' if failed == 1 else 'policies'} violated" if failed else \
        "no mandatory policy violated"
    lines += ["", f"{len(results)} policies{levels}: {verdict}"]
    return lines


@app.command()
def verify(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Only this model (name or team/name); repeatable. Default: every served model.")] = None,
    url: Annotated[str | None, typer.Option(
        help="Base URL of the platform Gateway, e.g. http://127.0.0.1:8080 (a port-forward). Requests still carry "
             "Host (and for https the TLS name) serving.hostname. Default: with --stack, the URL the deployed "
             "stack exports (endpoints.serving.url); else, or when the stack has none, https://<serving.hostname>."
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    timeout: Annotated[float, typer.Option(
        help="Seconds per request: all of it (connect, send, the whole answer).")] = 10.0,
) -> None:
    """Probe every served model's every track through the platform Gateway (header x-plinth-track): health,
    model metadata and one inference request each. Exit 1 when a track fails."""
    from plinth.verify import summary, table
    from plinth.verify import verify as run_verify

    spec, _ = _load(blueprint, stack)
    if url is None and stack is not None:
        url = _deployed_serving_url(stack)
    report = run_verify(spec, url=url, models=model, timeout=timeout)
    if as_json:
        sys.stdout.write(report.to_json())
    else:
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(table(report))
        console.print(summary(report), highlight=False)
    if not report.passed:
        if as_json:
            _err(summary(report))
        raise typer.Exit(1)


def _deployed_serving_url(stack: str) -> str | None:
    """The serving URL the deployed stack exports; None (with a note why) when it cannot be read."""
    return _deployed_endpoint(stack, "serving", ("url",), "serving URL", "the spec's serving.hostname is used")


def _deployed_endpoint(stack: str, service: str, keys: tuple[str, ...], what: str, otherwise: str) -> str | None:
    """The first of `endpoints.<service>.<key>` the deployed stack exports; None (with a note why) when none."""
    from plinth.stackoutputs import OutputsUnavailable, endpoint, stack_outputs

    try:
        outputs = stack_outputs(stack, project_dir())
    except OutputsUnavailable as exc:
        typer.echo(f"note: stack {stack}'s outputs are unavailable ({exc}); {otherwise}", err=True)
        return None
    found = next((value for value in (endpoint(outputs, service, key) for key in keys) if value), None)
    if found is None:
        typer.echo(f"note: stack {stack} exports no {what}; {otherwise}", err=True)
    return found


@app.command()
def lineage(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    url: Annotated[str | None, typer.Option(
        help="Base URL of MLflow, e.g. http://127.0.0.1:5000 (a port-forward to svc/mlflow in namespace mlflow). "
             "Default: with --stack, the URL the deployed stack exports (endpoints.mlflow.url, else trackingUri); "
             "else https://<registry.mlflow.hostname>.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
    timeout: Annotated[float, typer.Option(
        help="Seconds per request to MLflow: all of it (connect, send, the whole answer).")] = 10.0,
) -> None:
    """For every served track of every registry-backed model: the registered version, its run, the run's params,
    metrics, input datasets (with digests), source commit and feature service, and the spec's commit. Exit 1 on a
    finding (a served version not registered or without a run, a run without an input dataset) or when MLflow
    cannot be read or refuses. Signs on as MLflow's client does: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD (MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS for https)."""
    from plinth.lineage import lineage as run_lineage
    from plinth.lineage import lines, mlflow_url, summary

    spec, source = _load(blueprint, stack)
    exported = None
    if url is None and stack is not None:
        exported = _deployed_endpoint(stack, "mlflow", ("url", "trackingUri"), "MLflow URL",
                                      "the spec's registry.mlflow.hostname is used")
    report = run_lineage(spec, mlflow_url(spec, url, exported), timeout, _provenance(source))
    if as_json:
        sys.stdout.write(report.to_json())
    else:
        typer.echo("\n".join(lines(report)))
        typer.echo(summary(report))
    if not report.passed:
        if as_json:
            _err(summary(report))
        raise typer.Exit(1)


@app.command()
def report(
    blueprint: BlueprintArg = None,
    stack: StackOpt = None,
    out: Annotated[Path | None, typer.Option(help="Directory for report.md and report.json. Required.",
                                                callback=_out_dir)] = None,
    since: Annotated[Path | None, typer.Option(help="A previous report.json: add what changed since.")] = None,
) -> None:
    """Write a compliance report derived from the plan: provenance, data at rest, access matrix, network
    exposure, images and charts, secrets (names only), policy results."""
    from plinth.governance.check import check as run_checks
    from plinth.governance.check import policy_config
    from plinth.governance.report import build_report, write_report
    from plinth.mirror import mirror_list

    if out is None:
        raise SpecInvalid([SpecError(None, "--out", "required: the directory to write the report into")])
    previous = None
    if since is not None:
        from plinth.spec.yamltree import read_input

        try:
            data = read_input(since, str(since), MAX_REPORT_BYTES, "a report.json")
        except SpecInvalid as exc:  # a FIFO, a device, too large, missing: named as before
            why = exc.errors[0].message.removeprefix(f"{since}: ")
            raise SpecInvalid([SpecError(None, "--since", f"{since}: not a report.json ({why})")]) from None
        try:
            previous = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SpecInvalid([SpecError(None, "--since", f"{since}: not a report.json ({exc})")]) from None
        if not isinstance(previous, dict) or not isinstance(previous.get("provenance"), dict):
            raise SpecInvalid([SpecError(None, "--since", f"{since}: not a report.json written by plinth report")])
    try:
        _, levels = policy_config(project_dir(), stack)
    except ValueError as exc:
        raise SpecInvalid([SpecError(None, "policy", str(exc))]) from None
    spec, source = _load(blueprint, stack)
    result, _ = _plan_spec(spec, source, stack)
    built = build_report(result, spec, _provenance(source), run_checks(result, levels), mirror_list(spec))
    from plinth.plan import OutputError

    try:
        written = write_report(built, out, previous)
    except OutputError as exc:
        raise SpecInvalid([SpecError(None, "--out", str(exc))]) from None
    for path in written:
        _err(f"wrote {path}")


class DiffFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="Blueprint YAML, plan JSON, or stack:NAME.")],
    new: Annotated[str, typer.Argument(help="Blueprint YAML, plan JSON, or stack:NAME.")],
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when anything changed.")] = False,
    format: Annotated[DiffFormat, typer.Option(
        "--format", help="text (colour on a terminal unless NO_COLOR), json, or markdown (for a pull request).")
    ] = DiffFormat.text,
) -> None:
    """What changes between two specs (or plans), resource by resource, field by field; `+-` marks what
    Kubernetes replaces instead of changing in place."""
    from plinth.diff import diff_plans, render

    changes = diff_plans(*_plans_of(old, new))
    typer.echo(render(changes, format.value, colour=_colour()))
    if exit_code and changes:
        raise typer.Exit(1)


def _colour() -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _plans_of(old: str, new: str):
    """Both sides' plans. Two specs are planned side by side: a forked process plans the old one while this one
    plans the new (a plan is one thread's work: at 1,000 teams, on two cores, `diff` then takes about as long as
    one plan). A side that is a plan file, or a system without fork, plans one after the other."""
    import multiprocessing

    if _is_plan_file(old) or _is_plan_file(new) or "fork" not in multiprocessing.get_all_start_methods():
        return _plan_of(old), _plan_of(new)
    # Forked before this process shows its live count (the child shows none); leaving the block stops the child,
    # so an error in the new spec is reported at once. The old side's error is re-raised here by `get`.
    with multiprocessing.get_context("fork").Pool(1) as pool:
        old_plan = pool.apply_async(_plan_of, (old, False))
        new_plan = _plan_of(new)
        return old_plan.get(), new_plan


def _is_plan_file(ref: str) -> bool:
    return not ref.startswith("stack:") and Path(ref).suffix == ".json"


def _plan_of(ref: str, progress: bool = True):
    from plinth.plan import Plan

    if ref.startswith("stack:"):
        return _plan(None, ref.removeprefix("stack:"), progress=progress)[0]
    path = Path(ref)
    if _is_plan_file(ref):
        from plinth.spec.yamltree import read_input

        data = read_input(path, ref, MAX_PLAN_BYTES, "a plan file")
        try:
            return Plan.from_json(data.decode("utf-8"))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise SpecInvalid([SpecError(None, "", f"{ref}: not a plan file: {exc}")]) from None
    return _plan(path, None, progress=progress)[0]


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write to FILE instead of stdout.")] = None,
    overlay: Annotated[bool, typer.Option(
        "--overlay", help="The schema of a file merged onto a base (`extends:` blueprints, stack overrides): "
        "every field optional, `~` and `$delete: true` allowed.")] = False,
) -> None:
    """Print the JSON Schema of the platform spec (for editors and CI)."""
    from plinth.spec.schema import schema_json

    text = schema_json(overlay)
    if out:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SpecInvalid([SpecError(None, "--out", f"{out}: cannot write: {exc.strerror or exc}")]) from None
        _err(f"wrote {out}")
    else:
        sys.stdout.write(text)


canary_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Move a served model's canary and shadow: edit the blueprint "
                         "(or --stack's overrides) in place, validate it, print the plan diff.")
app.add_typer(canary_app, name="canary")
ModelArg = Annotated[str, typer.Argument(help="The model's name (or team/name).")]
EditedBlueprintArg = Annotated[Path | None, typer.Argument(
    help="The blueprint to edit. With --stack instead: that stack file's plinth:overrides.")]


GateOpt = Annotated[bool, typer.Option(
    "--gate", help="First read the canary's and stable's error rate and p95 latency over the model's slo.window "
    "from Prometheus (the series of its ModelCanaryWorse alert) and refuse (exit 1, nothing written) when the canary "
    "is worse than stable by more than slo.errorRatePercent points or slo.canaryLatencyMarginPercent percent.")]
PrometheusUrlOpt = Annotated[str | None, typer.Option(
    "--prometheus", help="Prometheus's base URL for --gate, e.g. http://127.0.0.1:9090 (a port-forward to "
    "svc/prometheus-operated in namespace monitoring). Default: with --stack, the URL the deployed stack exports "
    "(endpoints.monitoring.prometheus).")]
GateTimeoutOpt = Annotated[float, typer.Option(
    "--gate-timeout", help="Seconds per request to Prometheus: all of it (connect, send, the whole answer).")]


@canary_app.command("set")
def canary_set(model: ModelArg, blueprint: EditedBlueprintArg = None, stack: StackOpt = None,
               # `...`: typer's required option
               weight: Annotated[int, typer.Option(help="Percent of the routed traffic, 0-100.")] = ...,  # type: ignore[assignment]
               gate: GateOpt = False, prometheus: PrometheusUrlOpt = None, gate_timeout: GateTimeoutOpt = 10.0,
               ) -> None:
    """Set the canary's traffic weight."""
    from plinth import canary

    _canary_edit(model, blueprint, stack, canary.set_weight(weight),
                 gate=_gate(gate, prometheus, stack, gate_timeout))


MlflowUrlOpt = Annotated[str | None, typer.Option(
    "--url", help="MLflow's base URL, for a registry-backed model's aliases. Default: with --stack, the URL the "
    "deployed stack exports (endpoints.mlflow.url, else trackingUri); else the aliases are not moved.")]


@canary_app.command("promote")
def canary_promote(model: ModelArg, blueprint: EditedBlueprintArg = None, stack: StackOpt = None,
                   url: MlflowUrlOpt = None, gate: GateOpt = False, prometheus: PrometheusUrlOpt = None,
                   gate_timeout: GateTimeoutOpt = 10.0) -> None:
    """The canary's version becomes stable's (stable keeps its replicas); the canary is removed. A registry-backed
    model's alias `champion` moves to that version (and `challenger` is removed where it named it)."""
    from plinth import canary
    from plinth.promote import CHALLENGER, CHAMPION, AliasMove

    def move(found):
        if found.canary is None:
            return None  # the edit refuses it
        return AliasMove(found.registry.model, CHAMPION, found.canary.version, (CHALLENGER,))

    _canary_edit(model, blueprint, stack, canary.promote, _aliases(url, stack, move),
                 gate=_gate(gate, prometheus, stack, gate_timeout))


@canary_app.command("abort")
def canary_abort(model: ModelArg, blueprint: EditedBlueprintArg = None, stack: StackOpt = None) -> None:
    """Remove the canary; stable takes all the traffic."""
    from plinth import canary

    _canary_edit(model, blueprint, stack, canary.abort)


@canary_app.command("shadow")
def canary_shadow(model: ModelArg, blueprint: EditedBlueprintArg = None, stack: StackOpt = None,
                  version: Annotated[str | None, typer.Option(help="Run (or move) the shadow at VERSION.")] = None,
                  off: Annotated[bool, typer.Option("--off", help="Remove the shadow.")] = False) -> None:
    """Mirror every routed request to a shadow release, or (--off) stop."""
    from plinth import canary

    _canary_edit(model, blueprint, stack, canary.shadow(version, off))


def _aliases(url: str | None, stack: str | None, move):
    """The alias step of a registry-backed edit: MLflow at --url, else at the URL the deployed stack exports."""
    from plinth.promote import AliasStep

    def where() -> str | None:
        if url is None and stack is not None:
            return _deployed_endpoint(stack, "mlflow", ("url", "trackingUri"), "MLflow URL",
                                      "the registry's aliases are not moved")
        return url

    return AliasStep(where, move, _err)


def _gate(enabled: bool, url: str | None, stack: str | None, timeout: float):
    """The --gate step of a canary edit (None without --gate): measure the canary in Prometheus and refuse a worse
    one (exit 1); Prometheus at --prometheus, else at the URL the deployed stack exports."""
    if not enabled:
        if url is not None:
            raise SpecInvalid([SpecError(None, "--prometheus", "only with --gate")])
        return None

    def check(target, model_ref: str) -> None:
        from plinth import canary
        from plinth.gate import gate, lines

        where = url
        if where is None and stack is not None:
            where = _deployed_endpoint(stack, "monitoring", ("prometheus",), "Prometheus URL",
                                       "give --prometheus URL")
        if where is None:
            raise SpecInvalid([SpecError(None, "--prometheus", "--gate reads Prometheus: give --prometheus URL")])
        verdict = gate(canary.current_model(target, model_ref), where, timeout)
        typer.echo("\n".join(lines(verdict)))
        if not verdict.passed:
            _err(f"{target.name}: not changed: the canary gate refused")
            raise typer.Exit(1)

    return check


def _canary_edit(model: str, blueprint: Path | None, stack: str | None, edit, registry=None, target=None,
                 gate=None) -> None:
    """Edit, validate, (--gate: measure the canary), (a registry-backed model: read and check the aliases), write
    atomically, move the aliases, print the plan diff; a refused edit (exit 2) or gate (exit 1) writes nothing."""
    from plinth import canary
    from plinth.diff import diff_lines, diff_plans

    target = target or canary.target(project_dir() if stack else None, blueprint, stack)
    with canary.locked(target):  # from the read to the write: concurrent edits run one after the other
        old_text, new_text = canary.edited_text(target, model, edit)
        if gate:
            gate(target, model)
        moves = registry.prepare(target, model) if registry else False
        if new_text == old_text:
            if moves:
                _apply(registry)
            _err(f"{target.name}: already so, not changed")
            typer.echo("no changes")
            return
        old_plan = _plan(blueprint, stack)[0]
        canary.write(target, new_text, old_text)
    _err(f"wrote {target.name}")
    if registry:
        _apply(registry)
    typer.echo("\n".join(diff_lines(diff_plans(old_plan, _plan(blueprint, stack)[0]), colour=_colour())))


def _apply(registry) -> None:
    """Move the prepared aliases; MLflow failing now (the spec is written) exits 1 saying what is left to do."""
    from plinth.promote import AliasesNotMoved

    try:
        registry.apply()
    except AliasesNotMoved as exc:
        _err(str(exc))
        raise typer.Exit(1) from None


@app.command()
def promote(
    model: ModelArg,
    source: Annotated[str, typer.Option("--from", help="The stack whose stable version is promoted.")] = ...,  # type: ignore[assignment]
    to: Annotated[str, typer.Option("--to", help="The stack whose overrides are edited.")] = ...,  # type: ignore[assignment]
    canary_weight: Annotated[int | None, typer.Option(
        "--canary", help="Make the version the target's canary at this percent of the traffic. Default: make it "
        "the target's stable.")] = None,
    url: Annotated[str | None, typer.Option(
        help="MLflow's base URL, for a registry-backed model's aliases. Default: the URL the target stack exports "
             "(endpoints.mlflow.url, else trackingUri); else the aliases are not moved.")] = None,
) -> None:
    """The source stack's stable version becomes the target stack's canary (--canary WEIGHT) or stable: its
    overrides edited in place like `canary`. A registry-backed model's alias follows (`challenger` for a canary,
    `champion` for stable); a registry that already disagrees with the target's spec, refuses the credentials or
    does not answer refuses (exit 2). Signs on to MLflow as its client does: MLFLOW_TRACKING_TOKEN, or
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD."""
    from plinth import canary
    from plinth.promote import CHALLENGER, CHAMPION, AliasMove, promotion, source_version
    from plinth.spec.yamledit import Refused

    if source == to:
        raise SpecInvalid([SpecError(None, "--to", f"the same stack as --from ({source}): nothing to promote")])
    project = project_dir()
    origin = canary.target(project, None, source)
    try:
        version = source_version(canary.current_model(origin, model), source)
    except Refused as exc:
        raise SpecInvalid([SpecError(None, "", f"{origin.name}: {exc}")]) from None
    except SpecInvalid as exc:
        raise SpecInvalid([SpecError(None, "", f"{origin.name}: the spec is invalid as it stands"),
                           *exc.errors]) from None

    def move(found):
        if canary_weight is not None:
            return AliasMove(found.registry.model, CHALLENGER, version)
        return AliasMove(found.registry.model, CHAMPION, version, (CHALLENGER,))

    _canary_edit(model, None, to, promotion(version, canary_weight), _aliases(url, to, move),
                 canary.target(project, None, to))


def main() -> None:
    # Standalone mode: click handles --help, usage errors (exit 2) and typer.Exit.
    try:
        app()
    except SpecInvalid as exc:
        for error in exc.errors:
            _err(str(error))
        _err(plural(len(exc.errors), "error"))
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("PLINTH_DEBUG"):
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (set PLINTH_DEBUG=1 for the traceback)")
        sys.exit(1)
