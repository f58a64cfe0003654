"""``flowatlas simulate``: generate a seeded world of flows with planted investigations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from flowatlas.cli.common import InputError, as_flags, store_option

# The library's parameter names, as this command's flags (for its error messages).
_FLAGS = {"seed": "--seed", "flows": "--flows", "days": "--days", "sampling": "--sampling",
          "observe_share": "--observe", "exporters": "--exporters", "scenarios": "--scenarios",
          "target": "--udp"}


def _progress_bar(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("chunks"), TimeElapsedColumn(), disable=not enabled,
                    transient=True)


@click.command("simulate")
@click.option("--flows", type=int, default=1_000_000, show_default=True,
              help="Background flows in the simulated internet (before observation/sampling).")
@click.option("--days", type=float, default=14.0, show_default=True, help="Span of time.")
@click.option("--end", "end_text", help="End of the span (ISO time or date; default: today 00:00 UTC).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--sampling", default="1", show_default=True,
              help="Packet sampling 1:N per exporter: N, or N,M,... given to exporters in turn.")
@click.option("--observe", "observe_share", type=float, default=0.7, show_default=True,
              help="Share of AS-to-AS paths the partner networks observe (0-1].")
@click.option("--exporters", type=int, default=8, show_default=True, help="Partner exporters.")
@click.option("--scenarios", "scenarios_text",
              help="Planted scenarios: 'c2=2,victims=12,relays=4,max_hops=16,cover=3,"
                   "enterprise=1,talkers=8', 'none', or a JSON file/object.")
@store_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write flows as CSV.")
@click.option("--ndjson", "ndjson_path", type=click.Path(dir_okay=False),
              help="Write flows as NDJSON.")
@click.option("--udp", "udp_target", help="Send NetFlow/IPFIX datagrams to HOST:PORT.")
@click.option("--protocol", type=click.Choice(["ipfix", "v9"]), default="ipfix",
              show_default=True, help="Wire format for --udp.")
@click.option("--rate", type=float, default=200_000, show_default=True,
              help="Flow records per second for --udp (0: unlimited).")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False),
              help="Ground-truth JSON (default: STORE/ground-truth.json, else ./ground-truth.json)."
                   " The prefix table goes next to it as *.prefixes.csv.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.pass_context
def simulate_cmd(ctx: click.Context, flows: int, days: float, end_text: str | None, seed: int,
                 sampling: str, observe_share: float, exporters: int,
                 scenarios_text: str | None, store_path: str, csv_path: str | None,
                 ndjson_path: str | None, udp_target: str | None, protocol: str, rate: float,
                 truth_path: str | None, quiet: bool) -> None:
    """Generate realistic flows with planted, labelled investigations (deterministic per seed).

    Writes into the store unless --csv, --ndjson or --udp is given (add --store to do both;
    FLOWATLAS_STORE alone does not). Flows pass the store's ingest pipeline, whose clock is the
    end of the simulated span.
    """
    from flowatlas.export.sender import TargetError, parse_target
    from flowatlas.query.window import WindowError, parse_time
    from flowatlas.simulate.config import (
        ConfigError,
        ScenarioConfig,
        SimConfig,
        default_end,
        parse_sampling,
    )

    try:
        end = parse_time(end_text) if end_text else default_end()
        config = SimConfig(seed=seed, flows=flows, days=days, end=end,
                           sampling=parse_sampling(sampling), observe_share=observe_share,
                           exporters=exporters, scenarios=ScenarioConfig.parse(scenarios_text))
        target = parse_target(udp_target) if udp_target else None
        if rate < 0:
            raise ConfigError(f"--rate {rate}: must be >= 0")
    except (ConfigError, WindowError, TargetError) as exc:
        raise InputError(as_flags(str(exc), _FLAGS)) from exc
    # Only --store on the command line means "the store as well": FLOWATLAS_STORE (which the
    # demo sets) must not turn `--udp` into writing every flow twice (issue 19.2).
    explicit_store = ctx.get_parameter_source("store_path") is click.core.ParameterSource.COMMANDLINE
    use_store = explicit_store or not (csv_path or ndjson_path or target)
    if truth_path is None:
        truth_path = str(Path(store_path) / "ground-truth.json") if use_store \
            else "ground-truth.json"
    try:
        summary = _run(config, store_path if use_store else None, csv_path, ndjson_path, target,
                       protocol, rate, truth_path, not quiet)
    except OSError as exc:
        raise InputError(f"cannot write output: {exc}") from exc
    if not quiet:
        click.echo(summary, err=True)


def _run(config: Any, store_path: str | None, csv_path: str | None, ndjson_path: str | None,
         target: tuple[str, int] | None, protocol: str, rate: float, truth_path: str,
         progress_on: bool) -> str:
    import time

    from flowatlas.export import Encoder, UdpSender
    from flowatlas.ingest import pipeline_for
    from flowatlas.simulate.generator import Simulation, write_pipelined
    from flowatlas.simulate.sinks import TextSink
    from flowatlas.store import FlowStore, StoreError

    started = time.perf_counter()
    sim = Simulation(config)
    sinks: list[Any] = []
    if csv_path:
        sinks.append(TextSink(csv_path, "csv"))
    if ndjson_path:
        sinks.append(TextSink(ndjson_path, "ndjson"))
    store = None
    pipeline = None
    if store_path:
        try:
            store = FlowStore(store_path)
        except StoreError as exc:
            raise InputError(str(exc)) from exc
        # The simulated world's clock is its end: what is plausible is judged against it.
        pipeline = pipeline_for(store, clock=config.end.timestamp)
    from flowatlas.export.sender import TargetError

    try:
        sender = UdpSender(*target, rate=rate) if target else None
    except TargetError as exc:  # a host name that does not resolve
        raise InputError(as_flags(str(exc), _FLAGS)) from exc
    encoder = Encoder(protocol) if target else None
    rows = 0
    with _progress_bar(progress_on) as bar:
        task = bar.add_task("simulate", total=sim.chunks)
        batches = sim.batches(lambda done, _total: bar.update(task, completed=done))
        if store is not None and pipeline is not None and not sinks and sender is None:
            # Fast path: the store encodes chunk k while chunk k+1 is generated.
            batches = iter(())
            rows = write_pipelined(store, map(pipeline, sim.batches(
                lambda done, _total: bar.update(task, completed=done))))
        for batch in batches:
            rows += batch.num_rows
            if store is not None and pipeline is not None:
                store.append(pipeline(batch))
            for sink in sinks:
                sink.write(batch)
            if sender is not None and encoder is not None:
                sender.send(encoder.encode(batch))
    for sink in sinks:
        sink.close()
    if sender is not None:
        sender.close()
    sim.truth.flows["written"] = rows
    json_path, csv_prefixes = sim.truth.write(truth_path)
    seconds = time.perf_counter() - started
    dropped = ""
    if pipeline is not None and pipeline.drops.total:
        dropped = " (not stored: " + ", ".join(
            f"{n:,} {reason}" for reason, n in sorted(pipeline.drops.by_reason.items())) + ")"
    where = ", ".join(filter(None, [
        f"store {store_path}{dropped}" if store_path else "", csv_path or "", ndjson_path or "",
        f"udp {target[0]}:{target[1]} ({protocol}, {sender.datagrams if sender else 0} datagrams)"
        if target else ""]))
    return (f"simulated {rows:,} flows ({sim.truth.flows['planted_records']:,} planted) in "
            f"{seconds:.1f}s into {where}; ground truth {json_path}, prefixes {csv_prefixes}")


COMMANDS = [simulate_cmd]
