# The fake's datasets as data: their specs, items made on demand, sequences,
# orders, the objects the API lists and the deterministic bytes of every file.

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import math
import os
import random
import re
import threading
import uuid
from collections import OrderedDict, abc
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator
from urllib.parse import quote

from .images import IMAGE_SIZES, THUMB_SCALE, image_bytes, image_seed

ITEM_STATUSES = (
    "unattempted", "pending", "ready_for_annotation", "in_progress",
    "completed", "rework_required", "customer_approved",
)
SEQUENCE_STATUSES = ITEM_STATUSES + (
    "labeling_4d", "review_4d", "ready_for_2d", "labeling_2d", "review_2d",
    "final_review",
)
UNKNOWN_STATUS = "archived_v2"
ORDERINGS = ("key", "-key", "created_at", "-created_at")
DIALECTS = ("documented", "sdk")
HOSTILE_KEYS = (
    "a/b.jpg", ".", "..", "%41", "dup.jpg", "dup.jpg", "x" * 296 + ".jpg",
    "ñandú.png", "line\nbreak.jpg",
    b"bad\xff\xfe.jpg".decode("utf-8", "surrogateescape"), "", None,
)
VIEW_KEYS = ("camera_front", "camera_left", "camera_right", "lidar_top")
HOSTILE_VIEW_KEY = "cam/rear"
CLASS_NAMES = ("cars", "trucks", "buses", "bikes", "vans", "boats", "trains", "planes")
RESOLUTIONS = ((1920, 1080), (1280, 720), (640, 480), (2048, 1536))
FORMAT_EXTENSIONS = {"jpeg": ".jpg", "png": ".png"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}
TIME_ORIGIN = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- spec


@dataclasses.dataclass
class DatasetSpec:
    """What one --dataset argument asks for."""

    owner: str
    slug: str
    items: int = 20
    sequences: int = 0
    dialect: str = "documented"
    seed: int = 1
    hostile: bool = False
    size_known: float = 0.5
    updated: float = 0.0
    min_size: int = 1000
    max_size: int = 200000
    data_base: str | None = None
    files_dir: str | None = None
    images: bool = False
    classes: int = 0
    meta_pad: int = 0


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _byte_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _dialect(text: str) -> str:
    if text not in DIALECTS:
        raise ValueError(f"must be one of {', '.join(DIALECTS)}")
    return text


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


SPEC_OPTIONS: dict[str, Callable[[str], object]] = {
    "items": _count,
    "sequences": _count,
    "dialect": _dialect,
    "seed": int,
    "hostile": _flag,
    "size_known": _fraction,
    "updated": _fraction,
    "min_size": _byte_size,
    "max_size": _byte_size,
    "images": _flag,
    "classes": _count,
    "meta_pad": _count,
    "data_base": lambda text: text.rstrip("/"),
    "files_dir": str,
}


def parse_dataset_name(text: str) -> tuple[str, str]:
    """Split "OWNER/SLUG" into its two parts."""
    match = re.fullmatch(r"([^/\s:]+)/([^/\s:]+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not OWNER/SLUG")
    return match.group(1), match.group(2)


def parse_dataset_spec(text: str) -> DatasetSpec:
    """Parse "OWNER/SLUG[:opt=val,...]" into a DatasetSpec."""
    name, _, options = text.partition(":")
    spec = DatasetSpec(*parse_dataset_name(name))
    for option in filter(None, options.split(",")):
        field_name, has_value, value = option.partition("=")
        if not has_value or field_name not in SPEC_OPTIONS:
            raise argparse.ArgumentTypeError(f"unknown option {option!r} in {text!r}")
        try:
            setattr(spec, field_name, SPEC_OPTIONS[field_name](value))
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{field_name} in {text!r}: {error}") from None
    if spec.min_size > spec.max_size:
        raise argparse.ArgumentTypeError(f"min_size > max_size in {text!r}")
    if spec.files_dir and not spec.data_base:
        raise argparse.ArgumentTypeError(f"files_dir needs data_base in {text!r}")
    return spec


# ---------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """One downloadable file: its bytes are a function of seed_text and size."""

    kind: str
    seed_text: str
    size: int
    ext: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]

    @property
    def changed_seed_text(self) -> str:
        """Seed of the 're-uploaded' version served by the etag_change fault."""
        return self.seed_text + ":changed"


@dataclasses.dataclass
class Entry:
    uid: str
    key: str | None
    created_at: str
    files: dict[str, FileSpec]

    @property
    def key_hex(self) -> str | None:
        return None if self.key is None else self.key.encode("utf-8", "surrogateescape").hex()


@dataclasses.dataclass
class Item(Entry):
    status: str
    metadata: dict
    annotations: int
    video_thumbnail: bool
    updated_at: str | None = None


@dataclasses.dataclass
class Sequence(Entry):
    status: str
    number_of_frames: int
    views: list[dict]
    first_timestamp: float
    updated_at: str | None = None

    def frames(self) -> list[dict]:
        return [
            {"index": index, "key": f"frame_{index:04d}",
             "timestamp": round(self.first_timestamp + index * 0.1, 3)}
            for index in range(self.number_of_frames)
        ]


def fake_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def timestamps(rng: random.Random) -> Iterator[str]:
    """Strictly increasing ISO 8601 UTC creation times."""
    moment = TIME_ORIGIN
    while True:
        moment += timedelta(seconds=rng.randint(1, 90), microseconds=rng.randrange(1_000_000))
        yield moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=256)
def permutation_step(count: int, salt: str) -> int:
    step = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big") | 1
    while math.gcd(step, count) != 1:
        step += 2
    return step


def chosen(index: int, count: int, fraction: float, salt: str) -> bool:
    """Whether @index is among round(@count * @fraction) of range(@count),
    picked by a permutation of the indices: an exact share, decided for one
    index without looking at the others."""
    k = round(count * fraction)
    if k <= 0:
        return False
    return (index * permutation_step(count, salt) + len(salt)) % count < k


@functools.lru_cache(maxsize=4096)
def day_of(days: int) -> str:
    return (TIME_ORIGIN + timedelta(days=days)).strftime("%Y-%m-%d")


def moment(seconds: int, micro: int, zone: str) -> str:
    """TIME_ORIGIN + @seconds (and @micro microseconds) as RFC 3339 text
    with @zone ("Z" or an offset the seconds already include)."""
    days, rest = divmod(seconds, 86400)
    return f"{day_of(days)}T{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}.{micro:06d}{zone}"


def mix(value: int) -> int:
    """A 64-bit hash of an integer (splitmix64's finalizer)."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


class ItemSource(abc.Sequence):
    """The items of a dataset in creation order, each made from the seed and
    its index on demand, so that a dataset of a million items costs nothing
    until listed. An item's uid ends in its index, so it is found by uid
    without a table. Hostile keys sit at positions drawn once."""

    def __init__(self, spec: DatasetSpec):
        self.spec = spec
        self.name = f"{spec.seed}:{spec.owner}/{spec.slug}"
        self.salt = int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big")
        self.total = spec.items + (len(HOSTILE_KEYS) if spec.hostile else 0)
        rng = random.Random(self.name + ":items")
        self.hostile_at: dict[int, str | None] = {}
        if spec.hostile:
            positions = sorted(rng.sample(range(self.total), len(HOSTILE_KEYS)))
            self.hostile_at = dict(zip(positions, HOSTILE_KEYS))
        self.odd_status = rng.randrange(self.total) if self.total else -1
        self.reuploads: dict[str, str] = {}  # uid -> updated_at
        self._made: OrderedDict[int, Item] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self.total:
            raise IndexError(index)
        with self._lock:
            item = self._made.get(index)
            if item is not None:
                self._made.move_to_end(index)
                return item
        item = self.make(index)
        with self._lock:
            self._made[index] = item
            while len(self._made) > 20000:
                self._made.popitem(last=False)
        return item

    def index_of(self, uid: str) -> int | None:
        try:
            index = int(uid[-12:], 16)
        except ValueError:
            return None
        return index if index < self.total and self[index].uid == uid else None

    def key(self, index: int) -> tuple[str | None, str]:
        """(key, format) of item @index."""
        fmt = "png" if mix(self.salt ^ mix(index)) % 100 < 15 else "jpeg"
        if index in self.hostile_at:
            key = self.hostile_at[index]
            return key, "png" if key and key.endswith(".png") else "jpeg"
        plain = index - sum(1 for at in self.hostile_at if at < index)
        ext = FORMAT_EXTENSIONS[fmt]
        if self.spec.classes and plain % 7 != 3:
            folder = CLASS_NAMES[plain % self.spec.classes % len(CLASS_NAMES)]
            if self.spec.classes > len(CLASS_NAMES):
                folder += f"_{plain % self.spec.classes // len(CLASS_NAMES)}"
            if plain % 5 == 2:
                folder += "/" + ("front", "rear")[plain % 2]
            return f"{folder}/img_{plain:06d}{ext}", fmt
        return f"frame_{plain:06d}{ext}", fmt

    def make(self, index: int) -> Item:
        spec = self.spec
        h = [mix(self.salt ^ (index << 3 | k)) for k in range(6)]
        uid = str(uuid.UUID(int=(h[0] << 64 | h[1]) & ~((1 << 48) - 1) | index, version=4))
        key, fmt = self.key(index)
        ext = FORMAT_EXTENSIONS[fmt]
        seconds, micro = index * 45 + h[2] % 45, h[2] // 45 % 1_000_000
        data = FileSpec("data", f"{spec.seed}:{uid}:data",
                        spec.min_size + h[3] % (spec.max_size - spec.min_size + 1), ext)
        thumbnail = FileSpec("thumbnail", f"{spec.seed}:{uid}:thumbnail", 500 + h[3] // 7 % 4501, ext)
        width, height = RESOLUTIONS[h[4] % len(RESOLUTIONS)]
        if spec.images:
            width, height = IMAGE_SIZES[h[4] % len(IMAGE_SIZES)]
            data = image_file("data", f"{spec.seed}:{uid}", width, height, ext)
            thumbnail = image_file("thumbnail", f"{spec.seed}:{uid}", width // THUMB_SCALE,
                                   height // THUMB_SCALE, ext)
        metadata = {"width": width, "height": height, "format": fmt}
        if chosen(index, self.total, spec.size_known, self.name + ":size"):
            metadata["size"] = data.size
        if spec.meta_pad:
            metadata["notes"] = "n" * spec.meta_pad
        updated_at = None
        if chosen(index, self.total, spec.updated, self.name + ":items:updated"):
            updated_at = moment(seconds + 3 * 86400 + 2 * 3600, micro, "+02:00")
        if uid in self.reuploads:
            data = dataclasses.replace(data, seed_text=data.seed_text + ":reuploaded")
            updated_at = self.reuploads[uid]
        return Item(
            uid=uid, key=key, created_at=moment(seconds, micro, "Z"),
            files={"data": data, "thumbnail": thumbnail},
            status=UNKNOWN_STATUS if index == self.odd_status else ITEM_STATUSES[h[5] % len(ITEM_STATUSES)],
            metadata=metadata,
            annotations=h[5] // 7 % 31,
            video_thumbnail=index % 7 == 6,
            updated_at=updated_at,
        )

    def reupload(self, uid: str, updated_at: str) -> None:
        index = self.index_of(uid)
        self.reuploads[uid] = updated_at
        with self._lock:
            self._made.pop(index, None)


class Ordered(abc.Sequence):
    """A view of a sequence of entries in another order: the same one, its
    reverse, or by key (sorted on first use); ties by uid."""

    def __init__(self, entries: abc.Sequence, by_key: bool, descending: bool):
        self.entries = entries
        self.by_key = by_key
        self.descending = descending
        self._order: list[int] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Entry:
        if not 0 <= index < len(self.entries):
            raise IndexError(index)
        if not self.by_key:
            return self.entries[len(self.entries) - 1 - index if self.descending else index]
        if self._order is None:
            ranked = sorted(range(len(self.entries)), key=lambda at: self.entries[at].uid)
            ranked.sort(key=lambda at: sort_key(self.entries[at]), reverse=self.descending)
            self._order = ranked
        return self.entries[self._order[index]]


def image_file(kind: str, seed: str, width: int, height: int, ext: str) -> FileSpec:
    seed_text = image_seed(kind, seed, width, height, ext)
    return FileSpec(kind, seed_text, len(image_bytes(seed_text)), ext)


def mark_updated(spec: DatasetSpec, entries: list, kind: str) -> None:
    """Give a spec.updated fraction of @entries an updated_at, drawn apart so
    that datasets without it stay as they were."""
    picker = random.Random(f"{spec.seed}:{spec.owner}/{spec.slug}:{kind}:updated")
    for index in picker.sample(range(len(entries)), round(len(entries) * spec.updated)):
        created = datetime.strptime(entries[index].created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        entries[index].updated_at = (created + timedelta(days=3)).astimezone(timezone(timedelta(hours=2))).isoformat()


def build_view(key: str, frames: int, rng: random.Random) -> dict:
    lidar = key.startswith("lidar")
    return {
        "key": key,
        "load": {"type": "pointcloud" if lidar else "image",
                 "format": "pcd" if lidar else "jpeg", "frames": frames},
        "metrics": {"annotated_frames": rng.randint(0, frames), "objects": rng.randint(0, 200)},
    }


def build_sequences(spec: DatasetSpec, rng: random.Random) -> list[Sequence]:
    clock = timestamps(rng)
    sequences = []
    for index in range(spec.sequences):
        uid = fake_uuid(rng)
        frames = rng.randint(3, 40)
        view_keys = rng.sample(VIEW_KEYS, rng.randint(2, 3))
        if index == 0:
            view_keys[-1] = HOSTILE_VIEW_KEY
        featured = FileSpec("featured", f"{spec.seed}:{uid}:featured", rng.randint(2000, 20000), ".jpg")
        if spec.images:
            featured = image_file("featured", f"{spec.seed}:{uid}", 256, 192, ".jpg")
        sequences.append(Sequence(
            uid=uid, key=f"scene_{index + 1:04d}", created_at=next(clock),
            files={"featured": featured},
            status=rng.choice(SEQUENCE_STATUSES),
            number_of_frames=frames,
            views=[build_view(key, frames, rng) for key in view_keys],
            first_timestamp=1_700_000_000 + rng.randint(0, 10_000_000) / 10,
        ))
    mark_updated(spec, sequences, "sequences")
    return sequences


def sort_key(entry: Entry) -> str:
    """An entry's key for ordering: a null key sorts as the empty string."""
    return entry.key or ""


def build_orders(entries: abc.Sequence) -> dict[str, abc.Sequence]:
    """Every allowed ordering ("" is the default): entries are made in
    creation order."""
    created = Ordered(entries, False, False)
    return {
        "": created,
        "created_at": created,
        "-created_at": Ordered(entries, False, True),
        "key": Ordered(entries, True, False),
        "-key": Ordered(entries, True, True),
    }


class Dataset:
    """One dataset: its fixed content, its deletions and its rendered objects."""

    def __init__(self, spec: DatasetSpec, forbidden: bool):
        self.spec = spec
        self.forbidden = forbidden
        rng = random.Random(f"{spec.seed}:{spec.owner}/{spec.slug}")
        self.uid = fake_uuid(rng)
        self.created_at = (TIME_ORIGIN - timedelta(days=rng.randint(1, 365))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.items = ItemSource(spec)
        self.sequences = build_sequences(spec, rng)
        self.sequence_by_uid: dict[str, Entry] = {entry.uid: entry for entry in self.sequences}
        self.files_path = f"/files/{quote(spec.owner, safe='')}/{quote(spec.slug, safe='')}"
        self.item_orders = build_orders(self.items)
        self.sequence_orders = build_orders(self.sequences)
        self.deleted: set[str] = set()
        self.data_urls: dict[str, str] = {}
        self._objects: tuple[int | None, OrderedDict[str, dict]] = (None, OrderedDict())

    def entry(self, uid: str) -> Entry | None:
        """The item or sequence @uid, deleted or not."""
        sequence = self.sequence_by_uid.get(uid)
        if sequence is not None:
            return sequence
        index = self.items.index_of(uid) if isinstance(uid, str) else None
        return None if index is None else self.items[index]

    @property
    def documented(self) -> bool:
        return self.spec.dialect == "documented"

    def is_live(self, entry: Entry) -> bool:
        return entry.uid not in self.deleted

    def live_entry(self, uid: str, kind: type) -> Entry | None:
        entry = self.entry(uid)
        if isinstance(entry, kind) and self.is_live(entry):
            return entry
        return None

    def summary(self) -> dict:
        return {
            "uid": self.uid,
            "name": self.spec.slug.replace("-", " ").replace("_", " ").title(),
            "slug": self.spec.slug,
            "owner_name": self.spec.owner,
            "item_count": len(self.items) - sum(1 for uid in self.deleted if self.items.index_of(uid) is not None),
            "sequence_count": sum(1 for sequence in self.sequences if self.is_live(sequence)),
            "created_at": self.created_at,
        }

    def cached_object(self, entry: Entry, expires: int, render: Callable[[Entry], dict]) -> dict:
        """The entry's object for the URL epoch ending at expires, rendered once."""
        cached_expires, objects = self._objects
        if cached_expires != expires:
            objects = OrderedDict()
            self._objects = (expires, objects)
        obj = objects.get(entry.uid)
        if obj is None:
            obj = objects[entry.uid] = render(entry)
            while len(objects) > 20000:
                objects.popitem(last=False)
        return obj

    def forget_objects(self) -> None:
        """Render every object again: what it lists changed (a data URL, a re-upload)."""
        self._objects = (None, OrderedDict())

    def render_item(self, item: Item, link: Callable[[FileSpec], str]) -> dict:
        obj: dict = {"uid": item.uid, "key": item.key}
        data_url = self.data_urls.get(item.uid) or link(item.files["data"])
        thumbnail_url = link(item.files["thumbnail"])
        if self.documented:
            obj.update(status=item.status, data_url=data_url, thumbnail_url=thumbnail_url,
                       annotations_count=item.annotations)
        else:
            obj["url"] = data_url
            if item.video_thumbnail:
                obj.update(thumbnails=[], video_thumbnail=thumbnail_url)
            else:
                obj["thumbnails"] = [thumbnail_url]
            obj["annotations"] = {"boxes": item.annotations}
        obj.update(metadata=item.metadata, created_at=item.created_at)
        if item.updated_at:
            obj["updated_at"] = item.updated_at
        return obj

    def render_sequence(self, sequence: Sequence, link: Callable[[FileSpec], str]) -> dict:
        obj: dict = {"uid": sequence.uid, "key": sequence.key}
        if self.documented:
            obj["status"] = sequence.status
        obj.update(
            featured_image=link(sequence.files["featured"]),
            number_of_frames=sequence.number_of_frames,
            created_at=sequence.created_at,
            views=sequence.views,
        )
        if sequence.updated_at:
            obj["updated_at"] = sequence.updated_at
        return obj


# ---------------------------------------------------------------- files


CHUNK = 64 << 20


def file_bytes(seed_text: str, size: int) -> bytes:
    """The deterministic bytes of one file: an image for the seed texts of
    image_seed(), else randbytes of a seeded generator, drawn 64 MiB at a
    time (randbytes cannot draw 256 MiB or more at once)."""
    if seed_text.startswith("img:"):
        return image_bytes(seed_text)
    rng = random.Random(seed_text)
    if size <= CHUNK:
        return rng.randbytes(size)
    return b"".join(rng.randbytes(min(CHUNK, size - at))
                    for at in range(0, size, CHUNK))


def write_data_files(dataset: Dataset) -> None:
    """Write every item's data file to files_dir/<uid><ext>."""
    directory = dataset.spec.files_dir
    os.makedirs(directory, exist_ok=True)
    for item in dataset.items:
        data = item.files["data"]
        with open(os.path.join(directory, f"{item.uid}{data.ext}"), "wb") as out:
            out.write(file_bytes(data.seed_text, data.size))

@dataclasses.dataclass(frozen=True)
class Blob:
    data: bytes
    sha256: str

    @property
    def etag(self) -> str:
        return f'"{self.sha256[:16]}"'


class BlobStore:
    """Generated file bytes behind a bounded LRU, and every digest ever computed."""

    def __init__(self, budget: int):
        self._budget = budget
        self._used = 0
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def blob(self, seed_text: str, size: int) -> Blob:
        with self._lock:
            blob = self._blobs.get(seed_text)
            if blob is not None:
                self._blobs.move_to_end(seed_text)
                return blob
        data = file_bytes(seed_text, size)
        blob = Blob(data, hashlib.sha256(data).hexdigest())
        with self._lock:
            self._digests[seed_text] = blob.sha256
            if seed_text not in self._blobs:
                self._blobs[seed_text] = blob
                self._used += size
            while self._used > self._budget and len(self._blobs) > 1:
                _, evicted = self._blobs.popitem(last=False)
                self._used -= len(evicted.data)
        return blob

    def sha256(self, seed_text: str, size: int) -> str:
        with self._lock:
            digest = self._digests.get(seed_text)
        return digest if digest is not None else self.blob(seed_text, size).sha256
