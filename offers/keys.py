"""Every Redis key name the engine uses, and nothing else.

`docs/redis-keys.md` describes each key: its type, its contents and who writes it. Keys are laid
out for Redis Cluster: everything one transaction or Lua script touches shares one hash tag.

- `{registry}` holds merchants, fleets and the API-key index (written together on creation).
- `{m:<merchant_id>}` holds one merchant's places, offers, budget counters and redemption log,
  so that creating an offer, checking its places and redeeming it are single-slot operations.

Object ids are self-routing: a place or offer id carries its merchant's id (see `owner_of`), so a
request naming only an offer finds its hash tag without an extra lookup.
"""

from __future__ import annotations

import re

REGISTRY = "{registry}"
MERCHANTS = f"{REGISTRY}:merchants"
FLEETS = f"{REGISTRY}:fleets"
API_KEYS = f"{REGISTRY}:api_keys"
# string: the secret drivers' pseudonyms are keyed with (`redemptions.driver_key`), made once
DRIVER_KEY_SECRET = f"{REGISTRY}:driver_key_secret"

# The shared catalogue (places imported without a merchant, visible to every search) is stored
# as a merchant of its own so that it follows exactly the same code paths.
SHARED_MERCHANT = "m_shared"


# Ids are generated here and nowhere else; anything not of this form names no object, and a
# strict form keeps key-syntax characters (`{`, `}`, `:`) of a crafted id out of key names.
_OBJECT_ID = re.compile(r"([po])\.(m_[a-z0-9_]{1,24})\.(x?)([0-9a-f]{16})")
MAX_MERCHANT_ID = 26  # "m_" and at most 24 characters


def owner_of(object_id: str) -> str | None:
    """The merchant id embedded in a place or offer id (`p.<merchant>.<suffix>`), or None."""
    match = _OBJECT_ID.fullmatch(object_id)
    return match.group(2) if match else None


def id_parts(object_id: str) -> tuple[str, str, bool, int] | None:
    """A place or offer id's kind (`p` or `o`), merchant, whether its suffix is derived from an
    external id (`x`), and its 16 hex digits as an int; None for anything else."""
    match = _OBJECT_ID.fullmatch(object_id)
    if not match:
        return None
    kind, merchant, external, digits = match.groups()
    return kind, merchant, external == "x", int(digits, 16)


def object_id(kind: str, merchant: str, external: bool, digits: int) -> str:
    """The id `id_parts` took apart."""
    return f"{kind}.{merchant}.{'x' if external else ''}{digits:016x}"


def _tag(merchant_id: str) -> str:
    return "{m:" + merchant_id + "}"


def places(merchant_id: str) -> str:
    """Hash: place id -> place JSON document."""
    return f"{_tag(merchant_id)}:places"


def place_ids(merchant_id: str) -> str:
    """Sorted set (all scores 0): place ids in lexicographic order, for cursor pagination."""
    return f"{_tag(merchant_id)}:place_ids"


def offers(merchant_id: str) -> str:
    """Hash: offer id -> offer JSON document."""
    return f"{_tag(merchant_id)}:offers"


def catalogue_writer(merchant_id: str) -> str:
    """String with a TTL (redis-py's lock): held by the one write of the merchant's catalogue
    and its index records under way."""
    return f"{_tag(merchant_id)}:writer"


def offer_idempotency(merchant_id: str, idempotency_key: str) -> str:
    """String with a TTL: `<offer id>|<fingerprint of the request>`, the offer a create sent
    with this `Idempotency-Key` made."""
    return f"{_tag(merchant_id)}:idem_offer:{idempotency_key}"


def index_owed(merchant_id: str) -> str:
    """String: when (epoch ms) a write of the catalogue stored documents whose index records are
    not filed yet; written in the documents' own transaction."""
    return f"{_tag(merchant_id)}:index_owed"


def offer_ids(merchant_id: str) -> str:
    """Sorted set (all scores 0): offer ids in lexicographic order, for cursor pagination."""
    return f"{_tag(merchant_id)}:offer_ids"


def offer_terms(merchant_id: str, offer_id: str) -> str:
    """Hash: the numbers the redemption script enforces (limits, status, validity as epochs)."""
    return f"{_tag(merchant_id)}:offer:{offer_id}:terms"


def offer_redeemed(merchant_id: str, offer_id: str) -> str:
    """String counter: redemptions of the offer so far."""
    return f"{_tag(merchant_id)}:offer:{offer_id}:redeemed"


def offer_redeemed_on(merchant_id: str, offer_id: str, day: str) -> str:
    """String counter with a TTL: redemptions on one local day (`YYYY-MM-DD`, offer timezone)."""
    return f"{_tag(merchant_id)}:offer:{offer_id}:redeemed:{day}"


def offer_redeemed_by(merchant_id: str, offer_id: str) -> str:
    """Hash: pseudonymous driver key -> redemptions of the offer by that driver."""
    return f"{_tag(merchant_id)}:offer:{offer_id}:redeemed_by"


def offer_counter_keys(merchant_id: str, offer_id: str) -> list[str]:
    """The per-offer keys removed with the offer (daily counters expire on their own)."""
    return [
        offer_terms(merchant_id, offer_id),
        offer_redeemed(merchant_id, offer_id),
        offer_redeemed_by(merchant_id, offer_id),
    ]


def redemption_idempotency(merchant_id: str, fleet_id: str, idempotency_key: str) -> str:
    """String with a TTL: the redemption a fleet's idempotency key already produced."""
    return f"{_tag(merchant_id)}:idem:{fleet_id}:{idempotency_key}"


def redemptions(merchant_id: str) -> str:
    """Stream (bounded): one entry per counted redemption, for billing and analytics."""
    return f"{_tag(merchant_id)}:redemptions"


# -- the geo index: `{g:<res-3 region>}` tags, so one place's cell writes share a slot -------

# The record layout's version: bump it whenever PLACE_RECORD or OFFER_RECORD change, or how
# cells are versioned, so that records of an older layout are never decoded as the new one,
# and no reader trusts versions an older release's writer does not keep (`offers reindex`
# refiles). v5: regions carry versions.
GEO_LAYOUT = "v5"


def cell_places(region: str, cell: int) -> str:
    """String: the cell's packed place records (`offers.geo_index.PLACE_RECORD`), back to back."""
    return f"{{g:{region}}}:places:{GEO_LAYOUT}:{cell:x}"


def cell_offers(region: str, cell: int) -> str:
    """String: the cell's packed offer records (`offers.geo_index.OFFER_RECORD`), back to back."""
    return f"{{g:{region}}}:offers:{GEO_LAYOUT}:{cell:x}"


def cell_versions(region: str) -> str:
    """Hash: `cell_version_field` of each cell of the region holding records -> the 8 random
    bytes of the last write to it (a reader caches a cell under its token)."""
    return f"{{g:{region}}}:cells:{GEO_LAYOUT}"


CELL_KINDS = {"places": b"p", "offers": b"o"}
# The field of `cell_versions` holding the token of the region's last write (any cell, any
# kind): one field a reader compares before trusting the cells it holds, not one per cell.
REGION_VERSION_FIELD = b"r"


def cell_version_field(cell_key: str) -> bytes:
    """A cell's field in its region's `cell_versions` hash: its kind's letter (`CELL_KINDS`)
    and the cell's 8 bytes, little-endian."""
    head, cell = cell_key.rsplit(":", 1)
    return CELL_KINDS[head.split(":")[-2]] + int(cell, 16).to_bytes(8, "little")


# Hash: 8-byte digest -> weekly serving mask (`offers.hours`), which offer records name by
# digest. Content-addressed, so entries never change and readers cache them for good.
SERVING_MASKS = "{masks}:serving"


# -- the learning loop: `{d:<driver key>}` per driver, `{models}`, `{log}` ---------------------
# A driver key is the keyed pseudonymous hash of (fleet, driver) (`offers.redemptions.driver_key`);
# everything feedback touches for one driver shares its tag, so an online update is one
# optimistic transaction.

def driver_profile(driver: str) -> str:
    """Hash: `preferences` (JSON of declared visit frequencies), `state` (the per-driver model
    state, `ranking.online.DriverState` bytes)."""
    return "{d:" + driver + "}:profile"


def driver_recommendations(driver: str) -> str:
    """Sorted set with a TTL: the ids of the driver's recommendations still kept (`served`,
    `feedback_seen`), scored by when they expire (epoch milliseconds, Redis's clock), so that
    erasing a driver deletes its keys by name instead of scanning the whole keyspace."""
    return "{d:" + driver + "}:recommendations"


def driver_used_up(driver: str) -> str:
    """Hash with a TTL (`redemptions.DRIVER_USED_UP_TTL_S`, renewed by each write, which drops
    the entries past their own): offer id → the per-driver limit this driver has used up of it
    and until when that is kept (`<limit>:<epoch s>`), so that serving leaves those offers out
    before ranking (`serving.OfferServing.candidates`) while the offer's limit is still that."""
    return "{d:" + driver + "}:used_up"


def driver_erasures(driver: str) -> str:
    """String with a TTL: a random token each erase of the driver renews. A recommendation
    reads it before the profile and keeps what it served only if it has not changed since: one
    that read a profile an erase then deleted must not bring what it read back."""
    return "{d:" + driver + "}:erasures"


def served(driver: str, recommendation_id: str) -> str:
    """Hash with a TTL: what one recommendation served (fields `fleet`, `model`, `at`, `items`
    (JSON: per offer its feature row, score and propensity)), so feedback can learn from it."""
    return "{d:" + driver + "}:served:" + recommendation_id


def feedback_seen(driver: str, recommendation_id: str) -> str:
    """Set with a TTL: `<offer id>|<event>` already counted for this recommendation."""
    return "{d:" + driver + "}:feedback:" + recommendation_id


_RECOMMENDATION_ID = re.compile(r"rec_([0-9a-f]{20})_[0-9a-f]{16}")


def recommendation_driver(recommendation_id: str) -> str | None:
    """The driver key a recommendation id routes to (`rec_<driver key>_<random>`), or None."""
    match = _RECOMMENDATION_ID.fullmatch(recommendation_id)
    return match.group(1) if match else None


MODELS = "{models}"
MODEL_FILES = f"{MODELS}:files"     # hash: `<version>/<file name>` -> the model directory's files
MODEL_META = f"{MODELS}:meta"       # hash: version -> JSON (version, published_at, note, info)
MODEL_ACTIVE = f"{MODELS}:active"   # string: the version serving uses
# string: that version and its files' digest, `v3@<digest>`, what workers cache loaded models
# under (written with MODEL_ACTIVE; `ranking.registry.pointer_from` reads both)
MODEL_SERVING = f"{MODELS}:serving"
MODEL_HISTORY = f"{MODELS}:history"  # list: versions activated, newest first (for rollback)
MODEL_SEQUENCE = f"{MODELS}:sequence"  # string counter: the last version number given out

SERVED_LOG = "{log}:served"      # stream (bounded): one entry per served item
FEEDBACK_LOG = "{log}:feedback"  # stream (bounded): one entry per counted feedback event
DECISION_LOG = "{log}:decisions"  # stream (bounded): each recommendation's first choice
