"""The `offers` console command: serve the API, seed the demo region, import places, and
`demo`, which does all of it on an embedded Redis."""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import marshmallow as ma
import numpy as np
import redis

from offers import keys
from offers.catalogue import Catalogue
from offers.importers import read_places
from offers.redis_server import RedisServer
from offers.registry import Registry

from .schemas import PlaceSchema, repeated_external_ids

VAR = Path("var")
# The demo trains its ranking model on the coupon survey when the shared data sit beside the
# repository (../shared/data, see README); otherwise the baseline ranker serves.
COUPON_SURVEY = Path(__file__).resolve().parents[2] / "shared" / "data" / "coupon" / \
    "coupons_train.csv"
IMPORT_BATCH = 10_000  # places stored per transaction; a failed batch leaves earlier ones


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


class _Commands(click.Group):
    """An error in what a command was given or found (a file it cannot read, a model
    directory that is not one, Redis down) ends it with one line and exit status 1, not a
    traceback; OFFERS_DEBUG=1 shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("OFFERS_DEBUG"):
                raise
            raise click.ClickException(f"{type(error).__name__}: {error}") from error


@click.group(cls=_Commands)
def main() -> None:
    """Offers engine for connected cars."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from .access_log import AccessLogWithoutDrivers
    from .app import create_app

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", AccessLogWithoutDrivers)

        def load(self):
            return create_app()

    Server().run()


@main.command()
def seed() -> None:
    """Load the demo region from seed_data/ and print fresh API keys for its accounts."""
    from seed_data.loader import load_seed

    _print_tokens(load_seed(_redis()))


@main.command(name="import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--merchant", "merchant_id", default=None,
              help="Owner of the places; without it they join the shared catalogue.")
def import_places(path: str, merchant_id: str | None) -> None:
    """Import places from GeoJSON, CSV or OpenStreetMap (.osm.pbf) into the catalogue.

    The whole file is validated first; if any place is invalid nothing is stored. Places with
    an external id (OSM ids, for instance) are updated when the file is imported again."""
    client = _redis()
    if merchant_id and not Registry(client).merchant_exists(merchant_id):
        raise click.ClickException(f"no merchant {merchant_id}")
    try:
        places = PlaceSchema(many=True).load(read_places(path))
    except (ValueError, ma.ValidationError) as error:
        details = error.messages if isinstance(error, ma.ValidationError) else str(error)
        raise click.ClickException(f"nothing imported: {json.dumps(details)[:2000]}") from None
    repeated = repeated_external_ids(places)
    if repeated:  # across the file, not only within each batch stored
        named = sorted({places[index]["external_id"] for index in repeated})
        raise click.ClickException(f"nothing imported: places repeat an external_id "
                                   f"(one place each): {json.dumps(named[:20])}")
    owner = merchant_id or keys.SHARED_MERCHANT
    catalogue = Catalogue(client)
    for start in range(0, len(places), IMPORT_BATCH):
        catalogue.add_places(owner, places[start:start + IMPORT_BATCH])
    click.echo(f"imported {len(places)} places into {owner}")


@main.command()
def reindex() -> None:
    """Rebuild the geo index from the catalogue (after an upgrade that changed its layout)."""
    client = _redis()
    catalogue = Catalogue(client)
    catalogue.index.clear()
    merchants = [m.decode() for m in client.hkeys(keys.MERCHANTS)] + [keys.SHARED_MERCHANT]
    click.echo(f"filed {catalogue.reindex(merchants)} places of {len(merchants)} catalogues")


@main.command()
def migrate() -> None:
    """Bring what an earlier release kept on drivers up to this one (once after upgrading):
    list their kept recommendations so that erasing a driver finds them."""
    from ranking.learning import LearningLoop

    done = LearningLoop(_redis()).migrate()
    click.echo(f"listed {done['listed']} kept recommendations; dropped "
               f"{done['orphaned_feedback_sets']} feedback sets of recommendations gone and "
               f"{done['erase_marks']} erase marks")


@main.command()
def trim() -> None:
    """Drop log entries past their retention (redemptions 90 days, the learning loop's logs
    30 days). Writes trim their own log; run this daily (cron) so that the logs of a merchant
    with no redemptions since, or of an engine that stopped serving, do not outlive it."""
    from offers.redemptions import trim_redemption_logs
    from ranking.learning import trim_logs

    client = _redis()
    merchants = [m.decode() for m in client.hkeys(keys.MERCHANTS)] + [keys.SHARED_MERCHANT]
    now = time.time()
    redemptions = trim_redemption_logs(client, merchants, now)
    click.echo(f"dropped {redemptions} redemption log entries of {len(merchants)} merchants "
               f"and {trim_logs(client, now)} learning log entries past their retention")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, host: str, port: int) -> None:
    """Start Redis (embedded unless REDIS_URL is set), seed the demo region, and serve."""
    server = None
    if not os.environ.get("REDIS_URL"):
        server = RedisServer(data_dir=VAR / "redis").start()
        os.environ["REDIS_URL"] = server.url
        # For the console commands in another shell: its port is a new one each start.
        (VAR / "redis-url").write_text(server.url + "\n")
        click.echo(f"embedded Redis at {server.url} (data in {VAR / 'redis'}, "
                   f"URL in {VAR / 'redis-url'})")
    os.environ.setdefault("OFFERS_ADMIN_TOKEN", _demo_admin_token())
    try:
        ctx.invoke(seed)
        ctx.invoke(reindex)  # data kept from an older version may be filed the old way
        ctx.invoke(migrate)
        _demo_model()
        click.echo(f"admin token: {os.environ['OFFERS_ADMIN_TOKEN']}")
        click.echo(f"API:      http://{host}:{port}/v1")
        click.echo(f"API docs: http://{host}:{port}/docs")
        click.echo(f"OpenAPI:  http://{host}:{port}/openapi.json")
        ctx.invoke(serve, host=host, port=port, workers=2)
    finally:
        if server:
            server.stop()
            (VAR / "redis-url").unlink(missing_ok=True)


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="A running server (with the seed region and an active ranking model).")
@click.option("--fleet-key", required=True, envvar="OFFERS_FLEET_KEY",
              help="A fleet's API key (or OFFERS_FLEET_KEY).")
@click.option("--drivers", default=30, show_default=True, type=click.IntRange(1))
@click.option("--steps", default=60, show_default=True, type=click.IntRange(1),
              help="Drives per driver.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--shown", default=3, show_default=True, type=click.IntRange(1, 50),
              help="Offers each driver looks at per drive.")
@click.option("--window", default=None, type=click.IntRange(1),
              help="Steps per reported window [default: steps / 6].")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1),
              help="Drivers simulated at once.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def simulate(url: str, fleet_key: str, drivers: int, steps: int, seed: int, shown: int,
             window: int | None, concurrency: int, out_dir: str) -> None:
    """Run synthetic drivers with hidden preferences against a server; report acceptance.

    Writes OUT/simulation.json and OUT/simulation.png (see ranking/simulation.py)."""
    import sys

    from ranking.simulation import HttpTransport, Simulation, SimulationError, table, write

    simulation = Simulation(HttpTransport(url, fleet_key), drivers=drivers, steps=steps,
                            seed=seed, shown=shown, window=window, concurrency=concurrency)
    with click.progressbar(length=drivers, label="drivers", file=sys.stderr) as bar:
        try:
            report = simulation.run(progress=bar.update)
        except SimulationError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"models serving: {', '.join(report['models']) or 'none'}")
    click.echo(table(report))
    feedback = report["feedback"]
    click.echo(f"feedback: {feedback['ok']} of {feedback['sent']} calls answered 200")
    if report["oracle_pools_saturated"]:
        click.echo(f"warning: oracle pools hit the limit: {report['oracle_pools_saturated']}")
    data, image = write(report, out_dir)
    click.echo(f"wrote {data} and {image}")


def _demo_model() -> None:
    """Train, publish and activate a ranking model once, if none is active yet."""
    from ranking.datasets import read_dataset
    from ranking.registry import ModelRegistry
    from ranking.training import RankingModel, train

    registry = ModelRegistry(_redis())
    if registry.active_version():
        click.echo(f"ranking model {registry.active_version()} (active)")
        return
    if not COUPON_SURVEY.exists():
        click.echo(f"ranking: the baseline ({COUPON_SURVEY} not found, so no model trained)")
        return
    directory = VAR / "model"
    try:
        RankingModel.load(directory)
    except (OSError, ValueError):
        click.echo(f"training the ranking model on {COUPON_SURVEY} ...")
        train(read_dataset(COUPON_SURVEY, "coupon-survey")).save(directory)
    version = registry.publish(directory, note="make demo: coupon survey")
    registry.activate(version)
    click.echo(f"ranking model {version} (active), trained on the coupon survey")


def _demo_admin_token() -> str:
    """The demo's admin token, kept in var/ so it stays the same across restarts."""
    path = VAR / "admin-token"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _print_tokens(accounts: list[dict]) -> None:
    for account in accounts:
        click.echo(f"{account['role']:8} {account['id']:16} {account['name']:28} "
                   f"key: {account['api_key']}")


@main.group()
def ranking() -> None:
    """Train and evaluate the ranking model (see docs/ranking.md)."""


_FORMAT = click.Choice(["log", "coupon-survey"])


@ranking.command(name="train")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "data_format", required=True, type=_FORMAT)
@click.option("--out", "model_dir", required=True, type=click.Path(file_okay=False))
def ranking_train(data_path: str, data_format: str, model_dir: str) -> None:
    """Fit the global model and the per-driver prior; write them to MODEL_DIR."""
    from ranking.datasets import read_dataset
    from ranking.training import train as train_model

    try:
        data = read_dataset(data_path, data_format)
    except (ValueError, KeyError) as error:
        raise click.ClickException(f"cannot read {data_path}: {error}") from None
    if len(data) == 0:
        raise click.ClickException(f"{data_path} holds no rows to train on")
    model = train_model(data)
    model.save(model_dir)
    click.echo(f"trained on {len(data)} rows of {model.info['drivers']} drivers; "
               f"model in {model_dir}")
    if "warning" in model.info:
        click.echo(f"warning: {model.info['warning']}", err=True)


@ranking.command(name="publish")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--note", default="", help="Kept with the version (GET /v1/models).")
@click.option("--activate", is_flag=True, help="Serve it from the next request on.")
def ranking_publish(model_dir: str, note: str, activate: bool) -> None:
    """Store a trained MODEL_DIR in Redis as a new model version (REDIS_URL)."""
    from ranking.registry import ModelRegistry

    registry = ModelRegistry(_redis())
    version = registry.publish(model_dir, note=note)
    if activate:
        registry.activate(version)
    click.echo(f"published {version}{' (active)' if activate else ''}")


@ranking.command(name="activate")
@click.argument("version")
def ranking_activate(version: str) -> None:
    """Serve model VERSION from every worker's next request on (as POST
    /v1/models/{version}/activate)."""
    from ranking.registry import ModelRegistry

    ModelRegistry(_redis()).activate(version)
    click.echo(f"{version} active")


@ranking.command(name="rollback")
def ranking_rollback() -> None:
    """Serve the version that was active before the current one again (as POST
    /v1/models/rollback); again, the one before that."""
    from ranking.registry import ModelRegistry

    click.echo(f"{ModelRegistry(_redis()).rollback()['version']} active")


@ranking.command(name="versions")
def ranking_versions() -> None:
    """The published model versions, oldest first, the active one marked (as GET
    /v1/models)."""
    from ranking.registry import ModelRegistry

    for meta in ModelRegistry(_redis()).versions():
        published = datetime.fromtimestamp(meta["published_at"], UTC)
        click.echo(f"{'*' if meta['active'] else ' '} {meta['version']}  "
                   f"{published.isoformat(timespec='seconds')}  {meta['note']}".rstrip())


@ranking.command(name="export")
@click.option("--out", "directory", required=True, type=click.Path(file_okay=False))
def ranking_export(directory: str) -> None:
    """Write the served and feedback logs as OUT/log.csv and OUT/decisions.npz."""
    from ranking.learning import export

    counts = export(_redis(), directory)
    click.echo(f"{counts['served_items']} served items, {counts['decisions']} decisions, "
               f"{counts['outcomes']} outcomes -> {directory}")


@ranking.command(name="ope")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--decisions", "decisions_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="decisions.npz from export")
@click.option("--epsilon", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Exploration of the candidate policy (greedy by the model otherwise).")
def ranking_ope(model_dir: str, decisions_path: str, epsilon: float) -> None:
    """Estimate a candidate model's acceptance rate on logged traffic (IPS, SNIPS, DR)."""
    from ranking import offpolicy
    from ranking.training import RankingModel

    model = RankingModel.load(model_dir)
    decisions = offpolicy.load_decisions(
        decisions_path, lambda x: 1 / (1 + np.exp(-model.global_logits(x))))
    figures = offpolicy.estimate(decisions, epsilon)
    for name in ("logging_policy", "ips", "snips", "dr"):
        f = figures[name]
        click.echo(f"{name:15} {f['value']:.4f}  95% CI [{f['low']:.4f}, {f['high']:.4f}]")
    click.echo(f"{int(figures['decisions']['value'])} decisions; the candidate agrees with the "
               f"logged first choice on {figures['matched']['value']:.1%}")


@ranking.command(name="evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "data_format", required=True, type=_FORMAT)
@click.option("--warm-start-fraction", default=0.5, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="Share of each driver's rows, in row order, fed as feedback first.")
@click.option("--predictions", required=True, type=click.Path(dir_okay=False),
              help="CSV of the scored rows: row, driver_id, y, p.")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for PNG plots and summary.json.")
def ranking_evaluate(model_dir: str, data_path: str, data_format: str, warm_start_fraction: float,
             predictions: str, report_dir: str | None) -> None:
    """Score each driver's later rows after learning from their earlier ones."""
    from ranking import evaluation
    from ranking.datasets import read_dataset
    from ranking.training import RankingModel

    try:
        model = RankingModel.load(model_dir)
        data = read_dataset(data_path, data_format)
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error)) from None
    if len(data) == 0:
        raise click.ClickException(f"{data_path} holds no rows to score")
    result = evaluation.evaluate(model, data, warm_start_fraction)
    evaluation.write_predictions(predictions, data, result)
    for name, p in (("per-driver", result.p), ("global only", result.p_global)):
        figures = evaluation.summary(result.y, p)
        click.echo(f"{name:12} AUC {figures['auc']:.4f}  log loss {figures['log_loss']:.4f}  "
                   f"accuracy {figures['accuracy']:.4f}  ({figures['rows']} rows)")
    if report_dir:
        evaluation.write_report(report_dir, data, result)
        click.echo(f"report in {report_dir}")
