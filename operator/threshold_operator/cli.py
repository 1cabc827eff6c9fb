"""`threshold-operator`: run the operator, or print what the chart is generated from."""

from __future__ import annotations

import sys

import click
import yaml

from .settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """The ThresholdJob operator."""


@cli.command("run")
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only these namespaces (repeatable); default: the whole cluster.",
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False),
    envvar="THRESHOLD_OPERATOR_CATALOG",
    help="Node-pool catalog (YAML) merged over the defaults (cpu, gpu).",
)
@click.option(
    "--image",
    envvar="THRESHOLD_OPERATOR_IMAGE",
    default=Settings.image,
    show_default=True,
    help="Worker image for the Jobs.",
)
@click.option(
    "--image-pull-policy",
    envvar="THRESHOLD_OPERATOR_IMAGE_PULL_POLICY",
    type=click.Choice(["Always", "IfNotPresent", "Never"]),
    default=Settings.image_pull_policy,
    show_default=True,
)
@click.option(
    "--worker-service-account",
    envvar="THRESHOLD_WORKER_SERVICE_ACCOUNT",
    help="ServiceAccount of the worker pods (one with no permissions); default: the namespace's.",
)
@click.option(
    "--worker-log-level",
    envvar="THRESHOLD_OPERATOR_WORKER_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=Settings.log_level,
    show_default=True,
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    envvar="THRESHOLD_OPERATOR_INTERVAL",
    help="Seconds between reconcile passes of a ThresholdJob whose Job has pods that are not "
    "ready, or none yet (a pod that cannot start changes no Job); everything else follows "
    "watch events at once.",
)
@click.option(
    "--retry-backoff",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    envvar="THRESHOLD_OPERATOR_RETRY_BACKOFF",
    help="Seconds before the first retry after a transient API error; doubled each time up "
    "to 60, never sooner than the server's Retry-After.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=9090,
    show_default=True,
    envvar="THRESHOLD_OPERATOR_METRICS_PORT",
    help="Prometheus /metrics port; 0 disables.",
)
@click.option(
    "--liveness-port",
    type=int,
    default=8080,
    show_default=True,
    help="kopf liveness probe at http://0.0.0.0:PORT/healthz; 0 disables.",
)
@click.option(
    "--log-format", type=click.Choice(["json", "plain", "full"]), default="json", show_default=True
)
@click.option("--verbose", is_flag=True)
def run_command(
    namespaces: tuple[str, ...],
    catalog: str | None,
    image: str,
    image_pull_policy: str,
    worker_service_account: str | None,
    worker_log_level: str,
    interval: float,
    retry_backoff: float,
    metrics_port: int,
    liveness_port: int,
    log_format: str,
    verbose: bool,
) -> None:
    """Run the operator (kopf), cluster-wide or in the given namespaces."""
    import asyncio

    import kopf

    from .catalog import CatalogError, load_catalog
    from .handlers import OperatorConfig, operate

    try:
        pools = load_catalog(catalog)  # fail at start, with a readable message, not per job
    except CatalogError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    config = OperatorConfig(
        pools=pools,
        settings=Settings(
            image=image,
            image_pull_policy=image_pull_policy,
            worker_service_account=worker_service_account or None,
            log_level=worker_log_level.upper(),
        ),
        interval=interval,
        retry_backoff=retry_backoff,
    )
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    kopf.configure(
        verbose=verbose,
        log_format={
            "json": kopf.LogFormat.JSON,
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
        }[log_format],
    )
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    asyncio.run(operate(config, namespaces, liveness=liveness))


@cli.command("crd")
def crd_command() -> None:
    """Print the ThresholdJob CRD (generated from the API model)."""
    from .crd import crd_yaml

    click.echo(crd_yaml(), nl=False)


@cli.command("pools")
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False),
    envvar="THRESHOLD_OPERATOR_CATALOG",
    help="Node-pool catalog (YAML) merged over the defaults.",
)
def pools_command(catalog: str | None) -> None:
    """Print the node pools a ThresholdJob may name in spec.pool (defaults, merged with
    the catalog)."""
    from .catalog import CatalogError, load_catalog

    try:
        pools = load_catalog(catalog)
    except CatalogError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    dumped = {n: p.model_dump(by_alias=True, exclude_defaults=True) for n, p in pools.items()}
    click.echo(yaml.safe_dump({"pools": dumped}, sort_keys=False), nl=False)


@cli.command("rbac")
def rbac_command() -> None:
    """Print the RBAC rules the operator needs (one per API group and resource)."""
    from .rbac import rules

    click.echo(yaml.safe_dump(rules(), sort_keys=False), nl=False)


def main() -> None:
    cli(prog_name="threshold-operator")
