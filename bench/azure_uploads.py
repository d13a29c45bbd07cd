"""Azure upload benchmark against Azurite on loopback: amlctl's blob sync beside the seed's
`Datastore.upload` (azureml-core), each figure printed with its baseline from the same run.

    python bench/azure_uploads.py [--quick] [--small-files N] [--resync-files N]

It starts `azurite-blob` (the repo's node_modules, `npm ci`) on a free 127.0.0.1 port over
HTTP, with a throw-away account and data folder in a temp folder, and registers an
`AzureBlobDatastore` offline (no workspace) for that account; the datastore's blob client is
pointed at the emulator. amlctl's side is `plan_sync` + `apply_sync` into a `BlobFileStore`
over a container client built as amlctl's `container_client` builds it (SDK retries off),
plus a request counter. Figures:
1. first upload of 2,000 small files + 3 x 64 MiB (--quick: 500 + 3 x 8 MiB) against
   `Datastore.upload(src, target, overwrite=True)` of the same tree, --repeat turns taken in
   alternating order, the fastest of each kept; target >= 1.5x;
2. re-sync of 10,000 unchanged files (--quick: 2,000) in fresh objects, as a new process
   would run it: requests sent (target: the listing's pages only, one per 5,000 blobs, no
   per-file request), time (target < 1 s) and against `Datastore.upload(..., overwrite=
   False)` of the same tree, which asks for each blob (target >= 20x faster);
3. peak memory (VmHWM of a child process, Linux) syncing one 2 GiB file against one 10 MB
   file (--quick: 256 MiB against 10 MB); target: within 1.1x.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amlctl.providers.azure.blobfiles import BlobFileStore  # noqa: E402 - after sys.path
from amlctl.uploads import HashCache, apply_sync, plan_sync  # noqa: E402
from amlctl.uploads.hashcache import RACY_WINDOW_NS  # noqa: E402

MiB = 1 << 20
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "amlctlbenchstore"
ACCOUNT_KEY = base64.b64encode(hashlib.sha256(b"amlctl bench account").digest()).decode()
CONTAINER = "bench"
LIST_PAGE = 5000  # blobs per listing page (the service's maximum, the client's default)

_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from azure_uploads import container, BlobFileStore, HashCache, plan_sync, apply_sync
work, url, prefix = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
store = BlobFileStore(container(url, None), prefix)
with HashCache(work / (prefix + ".db")) as cache:
    plan = plan_sync(work / prefix, store.list_files(), cache=cache)
    apply_sync(plan, work / prefix, store, cache=cache)
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork+exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def container(url: str, on_request: Callable[[Any], None] | None) -> Any:
    """The bench container's client, as amlctl's `container_client` makes it (one try per
    request), with an optional hook seeing each request sent."""
    from azureml._vendor.azure_storage.blob import BlobServiceClient

    hooks = {"raw_request_hook": on_request} if on_request else {}
    service = BlobServiceClient(account_url=url, retry_total=0, **hooks,
                                credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})
    return service.get_container_client(CONTAINER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers (smoke run)")
    parser.add_argument("--small-files", type=int, help="small files of the first upload")
    parser.add_argument("--resync-files", type=int, help="files of the re-sync tree")
    parser.add_argument("--repeat", type=int, default=2, help="turns of the first uploads")
    args = parser.parse_args()
    small, large_mib = (500, 8) if args.quick else (2_000, 64)
    small = args.small_files or small
    resync = args.resync_files or (2_000 if args.quick else 10_000)
    big_mib = 256 if args.quick else 2048
    with tempfile.TemporaryDirectory(prefix="amlctl-azbench-") as tmp:
        work = Path(tmp)
        process, url = start_azurite(work)
        try:
            container(url, None).create_container()
            datastore = seed_datastore(url)
            print(f"Azurite at {url} (HTTP, loopback); first-upload tree: {small} small files "
                  f"(256 B - 8 KiB) + 3 x {large_mib} MiB")
            first = bench_first(work, url, datastore, small, large_mib, args.repeat)
            again = bench_resync(work, url, datastore, resync)
            memory = bench_memory(work, url, big_mib)
        finally:
            process.kill()
            process.wait()
    print()
    print(f"first upload: {first:.2f}x the seed (target >= 1.5x)")
    print(f"re-sync of {resync} unchanged files: {again[0]:.3f} s (target < 1 s), "
          f"{again[1]:.0f}x the seed (target >= 20x), requests {again[2]} "
          f"(target {math.ceil(resync / LIST_PAGE)})")
    print(f"memory, {big_mib} MiB file vs 10 MB file: {memory:.2f}x (target <= 1.1x)")


def start_azurite(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """azurite-blob on a free loopback port over HTTP; returns it and the account URL."""
    if shutil.which("node") is None or not AZURITE_BLOB.exists():
        sys.exit("Azurite is not installed: run `npm ci` in the repository root")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    location = work / "azurite"
    location.mkdir()
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{ACCOUNT_KEY}"}
    with open(work / "azurite.log", "wb") as log:
        process = subprocess.Popen(
            [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--location", str(location), "--silent", "--skipApiVersionCheck"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}/{ACCOUNT}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("azurite-blob did not start: " + (work / "azurite.log").read_text()[-2000:])


def seed_datastore(url: str) -> Any:
    """An azureml-core `AzureBlobDatastore` registered offline for the bench account, its
    blob client pointed at the emulator (the SDK always builds https://ACCOUNT.blob.ENDPOINT)."""
    from azureml._vendor.azure_storage.blob import BlobServiceClient
    from azureml.data.azure_storage_datastore import AzureBlobDatastore

    datastore = AzureBlobDatastore(None, "bench", CONTAINER, ACCOUNT, account_key=ACCOUNT_KEY)
    datastore.blob_service = BlobServiceClient(
        account_url=url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})
    return datastore


def make_tree(src: Path, small: int, large: int, large_mib: int) -> None:
    """Small files of random sizes in folders of 100, then `large` files of large_mib MiB."""
    rng = random.Random(11)
    src.mkdir(parents=True)
    for index in range(small):
        folder = src / f"part{index // 100:04d}"
        if index % 100 == 0:
            folder.mkdir()
        (folder / f"item{index:06d}.bin").write_bytes(rng.randbytes(rng.randint(256, 8192)))
    block = rng.randbytes(MiB)
    for index in range(large):
        with open(src / f"large{index}.bin", "wb") as fh:
            for chunk in range(large_mib):
                fh.write(block[chunk % 7:] + block[:chunk % 7])


def ours(work: Path, url: str, src: Path, prefix: str,
         on_request: Callable[[Any], None] | None = None) -> int:
    """One sync of src to prefix in fresh objects; returns the files sent."""
    store = BlobFileStore(container(url, on_request), prefix)
    with HashCache(work / f"{prefix}.db") as cache:
        plan = plan_sync(src, store.list_files, cache=cache)
        return len(apply_sync(plan, src, store, cache=cache).sent)


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def bench_first(work: Path, url: str, datastore: Any, small: int, large_mib: int,
                repeat: int) -> float:
    src = work / "first"
    make_tree(src, small, 3, large_mib)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    # the two take turns, each going first every other turn, into fresh prefixes; the
    # fastest run of each counts, as the one least disturbed by the rest of the machine
    ours_runs, seed_runs = [], []
    for turn in range(repeat):
        for side in ("ours", "seed") if turn % 2 == 0 else ("seed", "ours"):
            if side == "ours":
                seconds, sent = timed(lambda t=turn: ours(work, url, src, f"ours{t}"))
                ours_runs.append(seconds)
            else:
                seed_runs.append(timed(lambda t=turn: datastore.upload(
                    str(src), f"seed{t}", overwrite=True, show_progress=False))[0])
    ours_s, seed_s = min(ours_runs), min(seed_runs)
    mib = total / MiB
    print(f"1. first upload, {small + 3} files, {mib:.0f} MiB: amlctl {ours_s:.2f} s "
          f"({mib / ours_s:.1f} MiB/s, {sent} sent); seed Datastore.upload(overwrite=True) "
          f"{seed_s:.2f} s ({mib / seed_s:.1f} MiB/s); ratio {seed_s / ours_s:.2f}x "
          "(target >= 1.5x)")
    return seed_s / ours_s


def bench_resync(work: Path, url: str, datastore: Any, files: int) -> tuple[float, float, int]:
    src = work / "resync"
    make_tree(src, files, 0, 0)
    # data normally has aged past the hash cache's racy window (see amlctl/uploads/hashcache)
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)
    fill_s, sent = timed(lambda: ours(work, url, src, "resync"))
    print(f"2. re-sync tree: {files} files, first upload by amlctl {fill_s:.1f} s ({sent} sent)")
    requests: Counter[str] = Counter()

    def count(request: Any) -> None:
        query = request.http_request.url.partition("?")[2]
        requests["list" if "comp=list" in query else request.http_request.method] += 1

    ours_s, sent = timed(lambda: ours(work, url, src, "resync", count))
    seed_s, _ = timed(lambda: datastore.upload(str(src), "resync", overwrite=False,
                                               show_progress=False))
    total = sum(requests.values())
    pages = math.ceil(files / LIST_PAGE)
    print(f"   amlctl re-sync {ours_s:.3f} s (target < 1 s), {sent} sent, requests "
          f"{dict(requests)} = {total} (target: {pages} list, nothing else); seed "
          f"Datastore.upload(overwrite=False) {seed_s:.2f} s; ratio {seed_s / ours_s:.0f}x "
          "(target >= 20x)")
    return ours_s, seed_s / ours_s, total


def bench_memory(work: Path, url: str, big_mib: int) -> float:
    rss = {}
    for prefix, size in (("mem-small", 10 * 1000 * 1000), ("mem-big", big_mib * MiB)):
        folder = work / prefix
        folder.mkdir()
        block = random.Random(3).randbytes(MiB)
        with open(folder / "data.bin", "wb") as fh:
            for offset in range(0, size, MiB):
                fh.write(block[:min(MiB, size - offset)])
        child = [sys.executable, "-c", _CHILD, str(ROOT / "bench"), str(work), url, prefix]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rss[prefix] = int(out.split()[-1]) / 1024
        (folder / "data.bin").unlink()
    ratio = rss["mem-big"] / rss["mem-small"]
    print(f"3. peak memory syncing one {big_mib} MiB file {rss['mem-big']:.0f} MiB; one 10 MB "
          f"file {rss['mem-small']:.0f} MiB; ratio {ratio:.2f}x (target <= 1.1x)")
    return ratio


if __name__ == "__main__":
    main()
