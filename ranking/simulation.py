"""Synthetic drivers with hidden preferences, run against the API (`offers simulate`).

Each driver has hidden tastes: a base rate, a utility per offer category, a sensitivity to
detours, their own leaning on work and leisure trips and when alone, plus a few tastes the
whole population shares (coffee in the morning, bars at night, no car wash in the rain, fast
food with kids). A driver takes offer x with probability sigmoid(u(x)); u reads only what the
engine sees too: the offer's category and detour, the arrival time and the request's context.

Every step a driver drives one of the seed region's routes (from its start, at one of a few
fixed local times, with weather, passengers and trip purpose drawn for the step), asks
POST /v1/recommendations for `shown` offers and, for each, accepts (with its hidden
probability), dismisses or ignores it; accepts and dismisses go to POST /v1/feedback, ignores
send nothing. Three expected acceptance rates are computed per step, not sampled, so they are
smooth:

- engine: the mean hidden probability of what the engine showed this driver;
- control: the same for what the engine shows, in the same situation, to a driver who never
  gives feedback (what serving would be without per-driver learning, exploration included);
- oracle: the same for the best `shown` offers by hidden utility (one per place) among every
  offer the engine could have served there: the route's servable offers, fetched once per
  route and time, one call per category with the largest limit.

The gap closed over a window is (engine - control) / (oracle - control). The realised rate
(accepts / offers shown) is reported too; it is noisy. Everything a driver does is
deterministic given the seed; the engine's exploration is random unless the server sets
OFFERS_EXPLORATION_SEED.

The API is reached through a transport, `(method, path, body) -> (status, json)`:
`HttpTransport` for a running server, or a test client's.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

Transport = Callable[[str, str, dict | None], tuple[int, dict | None]]

ROUTES_FILE = Path(__file__).resolve().parents[1] / "seed_data" / "routes.json"
# Offer categories in the seed region (the others carry no offers there).
CATEGORIES = ("cafe", "fuel", "ev_charging", "fast_food", "car_wash", "supermarket", "bar",
              "restaurant")
# Local arrival times (the seed region is in America/Denver), each a step's `at`: fixed dates,
# inside every seed offer's validity, so places and schedules decide what is open.
SLOTS = ("2026-12-01T07:45:00-07:00", "2026-12-01T12:15:00-07:00", "2026-12-01T17:45:00-07:00",
         "2026-12-03T07:45:00-07:00", "2026-12-03T12:15:00-07:00", "2026-12-03T17:45:00-07:00",
         "2026-12-05T10:30:00-07:00")
WEATHER = (("sunny", 0.5), ("cloudy", 0.25), ("rainy", 0.15), ("snowy", 0.1))
PASSENGERS = (("alone", 0.55), ("partner", 0.2), ("friends", 0.1), ("kids", 0.15))
TRIP_PURPOSES = (("work", 0.4), ("home", 0.3), ("leisure", 0.3))
SPEED_KMH = 60.0
POOL_LIMIT = 50  # the API's largest limit


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def _draw(rng: np.random.Generator, choices) -> str:
    names, weights = zip(*choices, strict=True)
    return names[rng.choice(len(names), p=np.asarray(weights) / sum(weights))]


def _hour(at: str) -> float:
    return int(at[11:13]) + int(at[14:16]) / 60


def shared_utility(category: str, hour: float, context: dict) -> float:
    """Tastes every synthetic driver shares (the engine sees the time and context, not these)."""
    u = 0.0
    morning, lunch, evening = hour < 10, 11 <= hour < 14, hour >= 17
    if category == "cafe":
        u += 0.8 if morning else (-0.5 if evening else 0.0)
    elif category == "restaurant":
        u += -1.0 if morning else (0.5 if lunch or evening else 0.0)
    elif category == "bar":
        u += 0.6 if evening else -1.5
    elif category == "fast_food":
        u += (0.4 if lunch else 0.0) + (0.7 if context.get("passengers") == "kids" else 0.0)
    elif category == "car_wash" and context.get("weather") in ("rainy", "snowy"):
        u -= 1.5
    return u


@dataclass(frozen=True)
class HiddenDriver:
    """What a synthetic driver likes; the engine never sees it, only their feedback."""

    driver_id: str
    base: float
    taste: dict[str, float]        # per category, in logits
    detour_per_min: float          # logits lost per minute of detour
    purpose: dict[str, float]      # leaning on work / leisure trips
    alone: float                   # leaning when driving alone
    dismiss_rate: float            # of the offers not taken, the share dismissed (not ignored)
    routes: tuple[int, ...]        # the routes this driver usually drives

    @classmethod
    def draw(cls, driver_id: str, rng: np.random.Generator, n_routes: int) -> HiddenDriver:
        return cls(
            driver_id=driver_id, base=float(rng.normal(-1.8, 0.4)),
            taste={c: float(rng.normal(0, 1.3)) for c in CATEGORIES},
            detour_per_min=float(rng.uniform(0.1, 0.6)),
            purpose={"work": float(rng.normal(0, 0.5)), "leisure": float(rng.normal(0, 0.5))},
            alone=float(rng.normal(0, 0.4)), dismiss_rate=float(rng.uniform(0.3, 0.9)),
            routes=tuple(int(r) for r in rng.choice(n_routes, min(3, n_routes), replace=False)))

    def utility(self, category: str, detour_s: float, at: str, context: dict) -> float:
        u = self.base + self.taste.get(category, -3.0) - self.detour_per_min * detour_s / 60
        u += self.purpose.get(context.get("trip_purpose"), 0.0)
        u += self.alone if context.get("passengers") == "alone" else 0.0
        return u + shared_utility(category, _hour(at), context)

    def personal(self, category: str, detour_s: float) -> float:
        """The part of the utility that is this driver's own and that orders offers: what
        the engine's per-driver terms can learn (category and detour)."""
        return self.taste.get(category, -3.0) - self.detour_per_min * detour_s / 60

    def p_accept(self, item: dict, at: str, context: dict) -> float:
        return float(_sigmoid(self.utility(item["category"], item["detour_s"], at, context)))


@dataclass
class StepResult:
    driver: int
    step: int
    route: int
    at: str
    context: dict
    shown: int
    engine: float | None      # expected acceptance of what was shown (None: nothing shown)
    control: float | None
    oracle: float | None
    oracle_personal: float | None  # the best by personal taste alone (see `_oracle`)
    accepted: int
    dismissed: int
    ignored: int
    feedback_status: list[int] = field(default_factory=list)
    model: str | None = None


class HttpTransport:
    """JSON over HTTP to a running server, with a fleet key."""

    def __init__(self, url: str, fleet_key: str, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {fleet_key}",
                        "Content-Type": "application/json"}
        self.timeout_s = timeout_s

    def __call__(self, method: str, path: str, body: dict | None) -> tuple[int, dict | None]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, self.headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read())


def _json(raw: bytes) -> dict | None:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class SimulationError(RuntimeError):
    pass


class Simulation:
    def __init__(self, transport: Transport, drivers: int = 30, steps: int = 60, seed: int = 1,
                 shown: int = 3, window: int | None = None, routes: Sequence[dict] | None = None,
                 slots: Sequence[str] = SLOTS, concurrency: int = 4):
        self.transport = transport
        self.n_drivers, self.steps, self.seed, self.shown = drivers, steps, seed, shown
        self.window = window or max(1, steps // 6)
        self.routes = list(routes) if routes is not None else json.loads(ROUTES_FILE.read_text())
        self.slots = tuple(slots)
        self.concurrency = concurrency
        self.control_id = f"sim{seed}-control"
        self.drivers = [HiddenDriver.draw(f"sim{seed}-d{i:03d}", self._rng(i, 0), len(self.routes))
                        for i in range(drivers)]
        self._pools: dict[tuple[int, str], list[dict]] = {}
        self._pool_lock = threading.Lock()
        self.saturated: set[tuple[int, str, str]] = set()

    def _rng(self, driver: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, driver, stream])

    # -- the API -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None, ok=(200,)) -> dict | None:
        status, answer = self.transport(method, path, body)
        if status not in ok:
            raise SimulationError(f"{method} {path} answered {status}: {answer}")
        return answer

    def _request(self, driver_id: str, route: int, at: str, context: dict, limit: int,
                 **extra) -> dict:
        line = self.routes[route]["route"]
        lng, lat = line["coordinates"][0]
        return {"driver_id": driver_id, "route": line, "at": at, "context": context,
                "position": {"lat": lat, "lng": lng, "speed_kmh": SPEED_KMH},
                "limit": limit, **extra}

    def pool(self, route: int, at: str) -> list[dict]:
        """Every offer servable on this route at this time, one per place and category (the
        hidden utility reads only category and detour), and one per offer, as answers show
        them: an offer valid at several places comes at the one the engine ranked best for
        the oracle's own driver, so the oracle may miss a place of it with a shorter detour."""
        key = (route, at)
        with self._pool_lock:
            if key in self._pools:
                return self._pools[key]
        items = []
        for category in CATEGORIES:
            answer = self._call("POST", "/v1/recommendations", self._request(
                f"sim{self.seed}-oracle", route, at, {}, POOL_LIMIT, categories=[category]))
            if len(answer["items"]) >= POOL_LIMIT:
                self.saturated.add((route, at, category))
            items.extend(answer["items"])
        with self._pool_lock:
            self._pools[key] = items
        return items

    # -- one driver ----------------------------------------------------------------------------

    def _expected(self, driver: HiddenDriver, items: list[dict], at: str,
                  context: dict) -> float | None:
        if not items:
            return None
        return float(np.mean([driver.p_accept(item, at, context) for item in items]))

    def _oracle(self, driver: HiddenDriver, pool: list[dict], at: str, context: dict,
                count: int) -> tuple[float | None, float | None]:
        """The expected acceptance of the best `count` places by hidden utility, and of the
        best by the driver's personal taste alone (a ranker that learned everything the
        per-driver terms can hold and nothing about the tastes all drivers share)."""
        best: dict[str, tuple[float, float]] = {}  # per place: (p, personal) of its best offer
        by_personal: dict[str, tuple[float, float]] = {}
        for item in pool:
            p = driver.p_accept(item, at, context)
            mine = driver.personal(item["category"], item["detour_s"])
            place = item["place_id"]
            best[place] = max((p, mine), best.get(place, (-1.0, 0.0)))
            by_personal[place] = max((mine, p), by_personal.get(place, (-np.inf, 0.0)))
        top = sorted(best.values(), reverse=True)[:count]
        mine = sorted(by_personal.values(), reverse=True)[:count]
        if not top:
            return None, None
        return float(np.mean([p for p, _ in top])), float(np.mean([p for _, p in mine]))

    def run_driver(self, index: int) -> list[StepResult]:
        driver = self.drivers[index]
        situations, decisions = self._rng(index, 1), self._rng(index, 2)
        self._call("DELETE", f"/v1/drivers/{driver.driver_id}", None, ok=(204,))
        results = []
        for step in range(self.steps):
            usual = situations.random() < 0.8
            route = int(situations.choice(driver.routes) if usual
                        else situations.integers(len(self.routes)))
            at = self.slots[int(situations.integers(len(self.slots)))]
            context = {"weather": _draw(situations, WEATHER),
                       "passengers": _draw(situations, PASSENGERS),
                       "trip_purpose": _draw(situations, TRIP_PURPOSES)}
            answer = self._call("POST", "/v1/recommendations", self._request(
                driver.driver_id, route, at, context, self.shown))
            items = answer["items"][:self.shown]
            control = self._call("POST", "/v1/recommendations", self._request(
                self.control_id, route, at, context, self.shown))["items"][:self.shown]
            # What the engine showed is servable too: the oracle's pool holds it (its own
            # calls ask for the simulation's categories only).
            oracle, oracle_personal = self._oracle(driver, [*self.pool(route, at), *items],
                                                   at, context, len(items))
            result = StepResult(
                driver=index, step=step, route=route, at=at, context=context, shown=len(items),
                engine=self._expected(driver, items, at, context),
                control=self._expected(driver, control, at, context),
                oracle=oracle, oracle_personal=oracle_personal, accepted=0, dismissed=0,
                ignored=0, model=answer.get("model"))
            for item in items:
                draw, dismiss = decisions.random(), decisions.random()
                if draw < driver.p_accept(item, at, context):
                    event = "accept"
                    result.accepted += 1
                elif dismiss < driver.dismiss_rate:
                    event = "dismiss"
                    result.dismissed += 1
                else:
                    result.ignored += 1
                    continue
                status, _ = self.transport("POST", "/v1/feedback", {
                    "recommendation_id": answer["recommendation_id"],
                    "offer_id": item["offer_id"], "event": event})
                result.feedback_status.append(status)
            results.append(result)
        return results

    # -- the whole run -------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None) -> dict:
        self._call("DELETE", f"/v1/drivers/{self.control_id}", None, ok=(204,))
        results: list[StepResult] = []
        with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            for done in pool.map(self.run_driver, range(self.n_drivers)):
                results.extend(done)
                if progress:
                    progress(len(done))
        return self.report(results)

    def report(self, results: list[StepResult]) -> dict:
        windows = []
        for start in range(0, self.steps, self.window):
            rows = [r for r in results if start <= r.step < start + self.window]
            windows.append({"steps": [start, min(start + self.window, self.steps)],
                            **_summary(rows)})
        per_step = [_summary([r for r in results if r.step == s]) for s in range(self.steps)]
        last, first = windows[-1], windows[0]
        statuses = [s for r in results for s in r.feedback_status]
        return {
            "config": {"drivers": self.n_drivers, "steps": self.steps, "seed": self.seed,
                       "shown": self.shown, "window": self.window, "routes": len(self.routes),
                       "slots": list(self.slots)},
            "models": sorted({r.model for r in results if r.model}),
            "windows": windows,
            "per_step": per_step,
            "gap_closed": _gap(last["engine_expected"], last["control_expected"],
                               last["oracle"]),
            "gap_closed_since_start": _gap(last["engine_expected"], first["engine_expected"],
                                           last["oracle"]),
            "feedback": {"sent": len(statuses),
                         "ok": sum(s == 200 for s in statuses),
                         "statuses": sorted(set(statuses))},
            "oracle_pools_saturated": sorted(f"{self.routes[r]['name']} {at} {c}"
                                             for r, at, c in self.saturated),
            "drivers": [asdict(d) for d in self.drivers],
        }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _summary(rows: list[StepResult]) -> dict:
    """Per-item rates over some steps (each step weighted by the offers it showed)."""
    shown = [r for r in rows if r.shown]
    weights = [r.shown for r in shown]

    def weighted(name: str) -> float | None:
        known = [(getattr(r, name), r.shown) for r in shown if getattr(r, name) is not None]
        return (float(np.average([v for v, _ in known], weights=[w for _, w in known]))
                if known else None)

    total = sum(weights)
    return {"steps_run": len(rows), "shown": total,
            "accepted": sum(r.accepted for r in rows),
            "dismissed": sum(r.dismissed for r in rows),
            "ignored": sum(r.ignored for r in rows),
            "engine_expected": weighted("engine"), "control_expected": weighted("control"),
            "oracle": weighted("oracle"), "oracle_personal": weighted("oracle_personal"),
            "engine_realised": sum(r.accepted for r in rows) / total if total else None}


def _gap(engine: float | None, start: float | None, oracle: float | None) -> float | None:
    if None in (engine, start, oracle) or oracle - start <= 1e-9:
        return None
    return (engine - start) / (oracle - start)


def table(report: dict) -> str:
    """The per-window acceptance table `offers simulate` prints."""
    def pct(value):
        return "   -  " if value is None else f"{value:6.1%}"

    lines = [" steps    shown  engine exp  engine real  no learning  oracle  gap closed  "
             "oracle (own taste)",
             "-------  ------  ----------  -----------  -----------  ------  ----------  "
             "------------------"]
    for w in report["windows"]:
        gap = _gap(w["engine_expected"], w["control_expected"], w["oracle"])
        lines.append(f"{w['steps'][0]:3d}-{w['steps'][1] - 1:<3d}  {w['shown']:6d}  "
                     f"{pct(w['engine_expected']):>10}  {pct(w['engine_realised']):>11}  "
                     f"{pct(w['control_expected']):>11}  {pct(w['oracle']):>6}  "
                     f"{pct(gap):>10}  {pct(w['oracle_personal']):>18}")
    closed, since = report["gap_closed"], report["gap_closed_since_start"]
    lines.append(f"gap closed over the last window: {pct(closed).strip()} of the gap between "
                 f"serving without per-driver learning and the oracle "
                 f"({pct(since).strip()} measured from the first window's engine rate)")
    return "\n".join(lines)


def plot(report: dict, path: str | Path) -> None:
    """Acceptance over time: oracle, engine (expected and realised) and no learning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(report["config"]["steps"])

    def series(name):
        return np.array([np.nan if s[name] is None else s[name] for s in report["per_step"]])

    fig, ax = plt.subplots(figsize=(9, 6))
    ax.plot(steps, series("oracle"), color="black", label="oracle (knows hidden preferences)")
    ax.plot(steps, series("oracle_personal"), color="black", linestyle=":",
            label="oracle by own taste only (what per-driver terms can hold)")
    ax.plot(steps, series("engine_expected"), color="tab:blue",
            label="engine, expected acceptance")
    ax.plot(steps, series("control_expected"), color="tab:gray", linestyle="--",
            label="engine without per-driver learning")
    ax.plot(steps, series("engine_realised"), color="tab:blue", alpha=0.25, linewidth=0.8,
            label="engine, realised (per step)")
    centres = [(w["steps"][0] + w["steps"][1] - 1) / 2 for w in report["windows"]]
    ax.plot(centres, [w["engine_realised"] for w in report["windows"]], "o", color="tab:blue",
            label="engine, realised (per window)")
    ax.set_xlabel("step (one drive per driver)")
    ax.set_ylabel("acceptance rate per offer shown")
    gap = report["gap_closed"]
    config = report["config"]
    ax.set_title(f"{config['drivers']} synthetic drivers, top {config['shown']} shown; "
                 f"gap closed in the last window: "
                 f"{'n/a' if gap is None else f'{gap:.0%}'}")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, directory: str | Path) -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data, image = directory / "simulation.json", directory / "simulation.png"
    data.write_text(json.dumps(report, indent=1))
    plot(report, image)
    return data, image
