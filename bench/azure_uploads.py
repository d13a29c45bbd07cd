"""Azure upload benchmark against Azurite on loopback: amlctl's blob sync beside the seed's
`Datastore.upload` (azureml-core), each figure printed with its baseline from the same run.

    python bench/azure_uploads.py [--quick] [--small-files N] [--resync-files N]

It starts `azurite-blob` (the repo's node_modules, `npm ci`) on a free 127.0.0.1 port over
HTTP, with a throw-away account and its storage in memory (`--inMemoryPersistence`: the
service's disk is not this machine's, and an emulator writing its blobs to a folder here
shares the disk with the clients it serves, which is then what the ratios measure, most of
all on a filesystem slowed by a recent mass deletion, see bench/uploads.py), and registers an
`AzureBlobDatastore` offline (no workspace) for that account; the datastore's blob client is
pointed at the emulator. amlctl's side is `plan_sync` + `apply_sync` into a `BlobFileStore`
over a container client built as amlctl's `container_client` builds it (SDK retries off),
plus a request counter (the client's request hook, and the store's own transport).

Beside both, a third column: Azurite's ceiling, the same requests sent by a minimal client
(http.client, one keep-alive connection per thread, a SAS made by the SDK, no pipeline): the
best any client can do against this emulator on this machine. Azurite serves every request on
one node thread, so the CPU it used in each run is printed too (from /proc, Linux), with the
CPU the client side used (this process). Node compiles Azurite's code as it first runs: its
first ~2,000 requests cost about 1 s more of its CPU, so before any timed run the minimal
client uploads the tree once and lists it once, untimed (otherwise the side that happens to
run first pays for it).

Figures:
1. first upload of 2,000 small files + 3 x 64 MiB (--quick: 500 + 3 x 8 MiB) against
   `Datastore.upload(src, target, overwrite=True)` of the same tree, --repeat turns taken in
   rotating order, the fastest of each kept; target >= 1.5x;
2. re-sync of 10,000 unchanged files (--quick: 2,000) in fresh objects, as a new process
   would run it (--repeat runs, the fastest kept): requests sent (target: the listing's pages
   only, one per 5,000 blobs, no per-file request), time (target < 1 s) and against
   `Datastore.upload(..., overwrite=False)` of the same tree, which asks for each blob, also
   --repeat runs, its fastest kept (target >= 20x faster); the ceiling is the listing's
   pages fetched by the minimal client;
3. peak memory (VmHWM of a child process, Linux) syncing one 2 GiB file against one 10 MB
   file (--quick: 256 MiB against 10 MB); target: within 1.1x.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import http.client
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amlctl.providers.azure.blobfiles import SHA_KEY, BlobFileStore  # noqa: E402 - after sys.path
from amlctl.providers.azure.transport import PoolTransport  # noqa: E402
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
    parser.add_argument("--repeat", type=int, default=5,
                        help="turns of the first uploads and of the re-syncs")
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
            azurite = Azurite(process.pid, url)
            first = bench_first(work, azurite, datastore, small, large_mib, args.repeat)
            again = bench_resync(work, azurite, datastore, resync, args.repeat)
            memory = bench_memory(work, url, big_mib)
        finally:
            process.kill()
            process.wait()
    print()
    print(f"first upload: {first[0]:.2f}x the seed (target >= 1.5x); Azurite's ceiling "
          f"{first[1]:.2f}x the seed")
    print(f"re-sync of {resync} unchanged files: {again[0]:.3f} s (target < 1 s), "
          f"{again[1]:.0f}x the seed (target >= 20x), requests {again[2]} "
          f"(target {math.ceil(resync / LIST_PAGE)}); Azurite's ceiling {again[3]:.3f} s, "
          f"{again[4]:.0f}x the seed")
    print(f"memory, {big_mib} MiB file vs 10 MB file: {memory:.2f}x (target <= 1.1x)")


def start_azurite(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """azurite-blob on a free loopback port over HTTP; returns it and the account URL."""
    if shutil.which("node") is None or not AZURITE_BLOB.exists():
        sys.exit("Azurite is not installed: run `npm ci` in the repository root")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{ACCOUNT_KEY}"}
    with open(work / "azurite.log", "wb") as log:
        process = subprocess.Popen(
            [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--silent", "--skipApiVersionCheck", "--disableTelemetry",
             "--inMemoryPersistence"],
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


class Azurite:
    """The running emulator: its URL, and the CPU its process has used (Linux /proc)."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid = pid
        self.url = url
        self.port = int(urlsplit(url).port or 80)

    def cpu(self) -> float:
        """Seconds of CPU (user + system) the emulator has used so far; 0 off Linux."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """Wall time, the emulator's CPU and this process's CPU of one run."""

    def __init__(self, azurite: Azurite, action: Callable[[], object]) -> None:
        cpu, client, started = azurite.cpu(), time.process_time(), time.perf_counter()
        self.value = action()
        self.seconds = time.perf_counter() - started
        self.azurite_cpu = azurite.cpu() - cpu
        self.client_cpu = time.process_time() - client


class RawClient:
    """The same blob requests with nothing but http.client and a SAS: what any client could
    get out of this emulator. One keep-alive connection per thread."""

    def __init__(self, azurite: Azurite) -> None:
        from azureml._vendor.azure_storage.blob import generate_container_sas

        self.port = azurite.port
        self.sas = generate_container_sas(
            ACCOUNT, CONTAINER, account_key=ACCOUNT_KEY, permission="racwdl",
            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2))
        self.local = threading.local()

    def request(self, method: str, name: str | None, query: str = "", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> bytes:
        """One request; the response body (a dropped idle connection is reopened once)."""
        path = f"/{ACCOUNT}/{CONTAINER}" + (f"/{quote(name, safe='/~')}" if name else "")
        target = f"{path}?{query + '&' if query else ''}{self.sas}"
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port)
            try:
                connection.request(method, target, body=body,
                                   headers={"x-ms-version": "2021-08-06", **(headers or {})})
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.local.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {response.status} {data[:200]!r}")
            return data
        raise AssertionError("unreachable")

    def upload(self, src: Path, prefix: str, workers: int = 8) -> int:
        """Put Blob of every file under src, largest first, with its sha256 in metadata."""
        files = sorted((p for p in src.rglob("*") if p.is_file()),
                       key=lambda p: -p.stat().st_size)

        def put(path: Path) -> None:
            data = path.read_bytes()
            self.request("PUT", f"{prefix}/{path.relative_to(src).as_posix()}", body=data,
                         headers={"x-ms-blob-type": "BlockBlob",
                                  f"x-ms-meta-{SHA_KEY}": hashlib.sha256(data).hexdigest()})

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, files))
        return len(files)

    def listing(self, prefix: str) -> int:
        """Every page of the listing under prefix (with metadata); the blobs listed."""
        marker, count = "", 0
        while True:
            query = ("restype=container&comp=list&include=metadata&maxresults=5000"
                     f"&prefix={quote(prefix + '/', safe='')}")
            page = self.request("GET", None, query + (f"&marker={quote(marker, safe='')}"
                                                      if marker else ""))
            count += page.count(b"<Blob>")
            at = page.rfind(b"<NextMarker>")  # the last page has an empty <NextMarker/>
            if at < 0:
                return count
            marker = page[at + len(b"<NextMarker>"):page.index(b"</NextMarker>", at)].decode()


@contextmanager
def counting_requests(counts: Counter[str]) -> Iterator[Callable[[Any], None]]:
    """Count the requests amlctl sends: the SDK client's through the hook yielded, the
    store's own (listing, single puts) at its transport."""
    def kind(method: str, url: str) -> str:
        return "list" if "comp=list" in url.partition("?")[2] else method

    def hook(request: Any) -> None:
        counts[kind(request.http_request.method, request.http_request.url)] += 1

    send = PoolTransport.send

    def counted(self: PoolTransport, request: Any, **kwargs: Any) -> Any:
        counts[kind(request.method, request.url)] += 1
        return send(self, request, **kwargs)

    PoolTransport.send = counted  # type: ignore[method-assign]
    try:
        yield hook
    finally:
        PoolTransport.send = send  # type: ignore[method-assign]


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


def bench_first(work: Path, azurite: Azurite, datastore: Any, small: int, large_mib: int,
                repeat: int) -> tuple[float, float]:
    src = work / "first"
    make_tree(src, small, 3, large_mib)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    raw = RawClient(azurite)
    sides: dict[str, Callable[[str], object]] = {
        "amlctl": lambda prefix: ours(work, azurite.url, src, prefix),
        "seed": lambda prefix: datastore.upload(str(src), prefix, overwrite=True,
                                                show_progress=False),
        "ceiling": lambda prefix: raw.upload(src, prefix),
    }
    raw.upload(src, "warmup")  # untimed: the emulator's code compiles (see module doc)
    # the three take turns, in rotating order, into fresh prefixes; the fastest run of each
    # counts, as the one least disturbed by the rest of the machine
    runs: dict[str, list[Run]] = {side: [] for side in sides}
    names = list(sides)
    for turn in range(repeat):
        for side in names[turn % 3:] + names[:turn % 3]:
            runs[side].append(Run(azurite, lambda s=side, t=turn: sides[s](f"{s}{t}")))
    best = {side: min(done, key=lambda r: r.seconds) for side, done in runs.items()}
    median = {side: statistics.median(r.seconds for r in done) for side, done in runs.items()}
    mib = total / MiB
    line = ", ".join(f"{side} {run.seconds:.2f} s ({mib / run.seconds:.0f} MiB/s, Azurite "
                     f"CPU {run.azurite_cpu:.1f} s, client CPU {run.client_cpu:.2f} s; median "
                     f"{median[side]:.2f} s)"
                     for side, run in best.items())
    seed_s = best["seed"].seconds
    ratio, ceiling = seed_s / best["amlctl"].seconds, seed_s / best["ceiling"].seconds
    print(f"1. first upload, {small + 3} files, {mib:.0f} MiB, fastest of {repeat}: {line}")
    print(f"   amlctl {ratio:.2f}x the seed (target >= 1.5x; medians "
          f"{median['seed'] / median['amlctl']:.2f}x); Azurite's ceiling (minimal client) "
          f"{ceiling:.2f}x the seed (medians {median['seed'] / median['ceiling']:.2f}x)")
    return ratio, ceiling


def bench_resync(work: Path, azurite: Azurite, datastore: Any, files: int,
                 repeat: int) -> tuple[float, float, int, float, float]:
    src = work / "resync"
    make_tree(src, files, 0, 0)
    # data normally has aged past the hash cache's racy window (see amlctl/uploads/hashcache)
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)
    fill = Run(azurite, lambda: ours(work, azurite.url, src, "resync"))
    print(f"2. re-sync tree: {files} files, first upload by amlctl {fill.seconds:.1f} s "
          f"({fill.value} sent)")
    raw = RawClient(azurite)
    raw.listing("resync")  # untimed: the emulator's listing code compiles (see module doc)
    ours_runs, raw_runs, seed_runs, requests = [], [], [], Counter[str]()
    for turn in range(repeat):
        counts: Counter[str] = Counter()
        with counting_requests(counts) as hook:
            ours_runs.append(Run(azurite, lambda h=hook: ours(work, azurite.url, src,
                                                             "resync", h)))
        requests = counts if turn == 0 else requests
        if counts != requests:
            sys.exit(f"re-syncs sent different requests: {dict(requests)}, {dict(counts)}")
        raw_runs.append(Run(azurite, lambda: raw.listing("resync")))
        if raw_runs[-1].value != files:
            sys.exit(f"the minimal client listed {raw_runs[-1].value} blobs, not {files}")
        # the seed gets as many turns as we do, its fastest kept too: a fair ratio
        seed_runs.append(Run(azurite, lambda: datastore.upload(
            str(src), "resync", overwrite=False, show_progress=False)))
    seed = min(seed_runs, key=lambda r: r.seconds)
    best = min(ours_runs, key=lambda r: r.seconds)
    ceiling = min(raw_runs, key=lambda r: r.seconds)
    total = sum(requests.values())
    pages = math.ceil(files / LIST_PAGE)
    print(f"   amlctl re-sync, fastest of {repeat}: {best.seconds:.3f} s (target < 1 s; Azurite "
          f"CPU {best.azurite_cpu:.2f} s, client CPU {best.client_cpu:.2f} s; median "
          f"{statistics.median(r.seconds for r in ours_runs):.3f} s), {best.value} sent, "
          f"requests {dict(requests)} = {total} (target: {pages} list, nothing else)")
    print(f"   seed Datastore.upload(overwrite=False), fastest of {repeat}: {seed.seconds:.2f} s "
          f"(Azurite CPU {seed.azurite_cpu:.1f} s; median "
          f"{statistics.median(r.seconds for r in seed_runs):.2f} s); ratio "
          f"{seed.seconds / best.seconds:.1f}x (target >= 20x)")
    print(f"   Azurite's ceiling: the {pages} listing pages by the minimal client "
          f"{ceiling.seconds:.3f} s (Azurite CPU {ceiling.azurite_cpu:.2f} s; median "
          f"{statistics.median(r.seconds for r in raw_runs):.3f} s), "
          f"{seed.seconds / ceiling.seconds:.1f}x the seed")
    return (best.seconds, seed.seconds / best.seconds, total, ceiling.seconds,
            seed.seconds / ceiling.seconds)


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
