"""Features artifact → neighbors artifact, through the cache (what `ccli neighbors` runs).

The content key is the features artifact's key plus the part of the config that can
change the result (backend resolved, index parameters only for the index in use), so a
re-run with the same inputs is a cache hit that reads nothing but the output's header.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ccli import log
from ccli.errors import BadInput
from ccli.neighbors.config import NeighborsConfig, keyed_config
from ccli.neighbors.features import clean_view, read_labels, read_matrix, require_views
from ccli.engine.ddp import env_world_size
from ccli.engine.shards import joined, run_sharded
from ccli.neighbors.knn import check_k, prepare, resolve_backend, search, shard_grid
from ccli.neighbors.params import SearchParams
from ccli.neighbors.purity import neighbor_purity, purity_at
from ccli.store import ArtifactWriter, cache_root, content_key, get_or_compute, open_artifact, output_path


@dataclass
class NeighborsResult:
    path: Path
    key: str
    cached: bool
    n: int
    k: int
    backend: str
    config: dict
    purity: dict[int, float] | None = None
    steps: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        out["purity"] = None if self.purity is None else {str(j): v for j, v in self.purity.items()}
        return out


def index_dtype(n: int):
    return np.int32 if n < 2**31 - 1 else np.int64


def resolve_config(art, cfg: NeighborsConfig, device: str) -> NeighborsConfig:
    """Validate against the features file and fill in what depends on it (backend, clusters)."""
    n = art.shape("features")[0]
    check_k(cfg.k, n, str(art.path))
    if cfg.index == "ivf":
        lists = cfg.nlist or int(round(2 * n**0.5))
        if cfg.nlist < 0 or cfg.nprobe < 1:
            raise BadInput(f"nlist={cfg.nlist} must be 0 (2·√N) or more and nprobe={cfg.nprobe} at least 1.")
        if lists > n:
            raise BadInput(f"nlist={lists} IVF lists is more than the {n} points of {art.path}; use a smaller nlist.")
    cfg = replace(cfg, backend=resolve_backend(cfg.backend, cfg.index, device))
    if cfg.multi_view:
        from ccli.neighbors.multiview import check_cascade

        if cfg.include_self:
            raise BadInput("--include-self cannot be combined with --multi-view: every cascade step excludes the point itself.")
        require_views(art, ("strong", "weak"), draws={"strong": cfg.strong_draws})
        if cfg.clusters == 0:
            labels = read_labels(art)
            if labels is None:
                raise BadInput(f"--multi-view needs --clusters C: {art.path} has no labels to count the classes from.")
            cfg = replace(cfg, clusters=int(len(np.unique(labels[labels >= 0]))))
        check_cascade(_cascade_params(cfg, device), n, str(art.path))
    return cfg


def _cascade_params(cfg: NeighborsConfig, device: str):
    from ccli.neighbors.multiview import CascadeParams

    return CascadeParams(
        q=cfg.k,
        clusters=cfg.clusters,
        mult1=cfg.mult1,
        mult2=cfg.mult2,
        metric=cfg.metric,
        strong_mode=cfg.strong_mode,
        filter_head=cfg.filter_head,
        filter_score=cfg.filter_score,
        kmeans_temperature=cfg.kmeans_temperature,
        head_hidden=cfg.head_hidden,
        head_epochs=cfg.head_epochs,
        head_lr=cfg.head_lr,
        head_batch=cfg.head_batch,
        head_entropy_weight=cfg.head_entropy_weight,
        seed=cfg.seed,
        device=device,
    )


def _search_params(cfg: NeighborsConfig, k: int, device: str, block_rows: int) -> SearchParams:
    return SearchParams(
        k=k,
        metric=cfg.metric,
        backend=cfg.backend,
        index=cfg.index,
        nlist=cfg.nlist,
        nprobe=cfg.nprobe,
        hnsw_m=cfg.hnsw_m,
        ef_construction=cfg.ef_construction,
        ef_search=cfg.ef_search,
        exclude_self=not cfg.include_self,
        seed=cfg.seed,
        block_rows=block_rows,
        device=device,
        prune=cfg.prune,
    )


def compute_neighbors(
    features_path: str | Path,
    cfg: NeighborsConfig,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    device: str = "auto",
    block_rows: int = 0,
) -> NeighborsResult:
    """Make (or find in the cache) the neighbors artifact for `features_path` under `cfg`.

    Under torchrun each rank searches the queries of its shard against every row and rank 0
    writes the one artifact (ccli.engine.shards): the rows, the key and the file are those of one
    process. Multi-view mode shards its step-1 search; the cascade's re-ranking runs on rank 0.
    """
    if block_rows < 0:
        raise BadInput(f"block_rows={block_rows} must be 0 (automatic) or a positive number of rows.")
    with open_artifact(features_path, "features") as art:
        cfg = resolve_config(art, cfg, device)
        keyed = keyed_config(asdict(cfg))
        key = content_key("neighbors", keyed, [art.key])
        features_key = art.key
        n = art.shape("features")[0]
        searched = clean_view(art) if cfg.multi_view else "features"
    world = env_world_size()
    if world > 1 and cfg.index != "flat":
        raise BadInput(f"index={cfg.index} cannot be split across the {world} processes of this torchrun: only exact "
                       "search (index=flat) is; run the approximate index in one process.")
    path = output_path(out, cache_root(cache_dir), "neighbors", key, force=force)
    with joined(device) as (ctx, dev):
        run_device = str(dev) if ctx.distributed else device
        k_searched = cfg.mult1 * cfg.k if cfg.multi_view else cfg.k
        params = _search_params(cfg, k_searched, run_device, block_rows)
        table = _LazyTable(features_path, searched, cfg.metric, prepared=cfg.multi_view)

        def produce(lo: int, hi: int):
            for start, idx, scores in search(table.get(), params, copy=False, rows=(lo, hi)):
                yield start, {"indices": idx, "scores": scores}

        def build(target: Path, gather) -> None:
            started = time.perf_counter()
            with open_artifact(features_path, "features") as art:
                if cfg.multi_view:
                    _build_multi_view(art, target, cfg, keyed, key, features_key, run_device, gather, table)
                else:
                    _build_plain(art, target, cfg, keyed, key, features_key, gather, ctx.distributed, table)
            log.info(f"neighbours for {n:,} points in {time.perf_counter() - started:.1f}s → {target}")

        cached = run_sharded(ctx, n, produce, align=shard_grid(params),
                             main=lambda gather: get_or_compute(path, "neighbors", key, lambda t: build(t, gather),
                                                                force=force))
        if cached:
            log.info(f"cache hit: {path}")
        if not ctx.is_main:  # rank 0 reads the result back and reports it
            return NeighborsResult(path=path, key=key, cached=cached, n=n, k=cfg.k, backend=cfg.backend, config=keyed)
    return _summarise(path, key, cached, keyed)


class _LazyTable:
    """The searched matrix, read (and for multi-view prepared) on first use: a cache hit reads nothing."""

    def __init__(self, features_path, name: str, metric: str, prepared: bool):
        self.features_path, self.name, self.metric, self.prepared = features_path, name, metric, prepared
        self._x = None

    def get(self) -> np.ndarray:
        if self._x is None:
            with open_artifact(self.features_path, "features") as art:
                x = _read_checked(art, self.name, self.metric)
            # The cascade compares rows of the prepared clean table; the plain search prepares
            # its own copy-free matrix inside `search`.
            self._x = prepare(x, self.metric, copy=False) if self.prepared else x
        return self._x


def _attrs(cfg: NeighborsConfig, views: list[str], score_kind: str) -> dict:
    return {
        "k": cfg.k,
        "metric": cfg.metric,
        "backend": cfg.backend,
        "index": cfg.index,
        "exclude_self": not cfg.include_self,
        "multi_view": cfg.multi_view,
        "views": json.dumps(views),
        "score_kind": score_kind,
    }


def _write_labels(writer: ArtifactWriter, art) -> None:
    labels = read_labels(art)
    if labels is not None:
        writer.write("labels", labels)


def _read_checked(art, name: str, metric: str) -> np.ndarray:
    """read_matrix, refusing all-zero rows under cosine (they have no direction to compare)."""
    x = read_matrix(art, name)
    if metric == "cosine":
        zero = int((~np.any(x != 0, axis=1)).sum())
        if zero:
            raise BadInput(f"{art.path}: dataset '{name}' has {zero} all-zero row(s) of {len(x)}; cosine similarity "
                           "is undefined for them (use metric=l2).")
    return x


def _build_plain(art, target, cfg, keyed, key, features_key, gather, any_order: bool, table) -> None:
    n, d = table.get().shape  # read and checked before anything is said or opened for writing
    log.info(f"searching {n:,}×{d} features: k={cfg.k}, {cfg.metric}, {cfg.backend}/{cfg.index}")
    score_kind = "cosine" if cfg.metric == "cosine" else "l2_distance"
    with ArtifactWriter(target, "neighbors", key, keyed, [features_key], _attrs(cfg, ["features"], score_kind)) as w:
        w.create("indices", (n, cfg.k), index_dtype(n), any_order=any_order)
        w.create("scores", (n, cfg.k), np.float32, any_order=any_order)
        from ccli.engine.progress import StepProgress

        with StepProgress("neighbours", n) as bar:
            done = 0

            def write(start: int, block: dict) -> None:
                nonlocal done
                w.write_rows("indices", start, block["indices"])
                w.write_rows("scores", start, block["scores"])
                done += len(block["indices"])
                bar.update(done)
                log.debug(f"  rows {done:,}/{n:,}")

            gather(write)
        _write_labels(w, art)


def _build_multi_view(art, target, cfg, keyed, key, features_key, device, gather, table) -> None:
    from ccli.neighbors.multiview import cascade

    views = require_views(art, ("strong", "weak"), draws={"strong": cfg.strong_draws})
    clean_name = clean_view(art)
    params = _cascade_params(cfg, device)
    n = len(table.get())  # the clean view, read and checked before anything is said
    log.info(
        f"multi-view cascade on {n:,} points: {cfg.mult1 * cfg.k} ({clean_name}) → "
        f"{cfg.mult2 * cfg.k} ({', '.join(views['strong'])}) → {cfg.k} ({views['weak'][0]})"
    )
    # Step 1, the full search, is the one the ranks share; steps 2-3 re-rank its rows here.
    step1_idx = np.empty((n, cfg.mult1 * cfg.k), dtype=np.int64)
    step1_scores = np.empty((n, cfg.mult1 * cfg.k), dtype=np.float32)

    def write(start: int, block: dict) -> None:
        step1_idx[start : start + len(block["indices"])] = block["indices"]
        step1_scores[start : start + len(block["scores"])] = block["scores"]

    gather(write)
    clean = table.get()  # prepared for the metric, as the search left it
    strong = [prepare(read_matrix(art, name), cfg.metric, copy=False) for name in views["strong"]]
    weak = prepare(read_matrix(art, views["weak"][0]), cfg.metric, copy=False)
    steps = cascade(step1_idx, step1_scores, clean, strong, weak, params, log=log.info)
    view_of = {"clean": [clean_name], "strong": views["strong"], "weak": views["weak"][:1]}
    used = [clean_name, *views["strong"], views["weak"][0]]
    final = steps[-1]
    attrs = {**_attrs(cfg, used, final.score_kind), "steps": json.dumps([s.name for s in steps])}
    with ArtifactWriter(target, "neighbors", key, keyed, [features_key], attrs) as w:
        w.write("indices", final.indices.astype(index_dtype(n)))
        w.write("scores", final.scores.astype(np.float32))
        for s in steps:
            w.write(f"steps/{s.name}/indices", s.indices.astype(index_dtype(n)))
            w.write(f"steps/{s.name}/scores", s.scores.astype(np.float32))
            w.set_attrs(
                f"steps/{s.name}", k=s.indices.shape[1], views=json.dumps(view_of[s.name]), score_kind=s.score_kind
            )
        _write_labels(w, art)


def _summarise(path: Path, key: str, cached: bool, keyed: dict) -> NeighborsResult:
    """Read back what was stored and add purity diagnostics when labels are known."""
    with open_artifact(path, "neighbors") as art:
        indices = art.read("indices")
        n, k = indices.shape
        labels = art.read("labels").astype(np.int64) if "labels" in art else None
        backend = str(art.attr("backend", ""))
        result = NeighborsResult(path=path, key=key, cached=cached, n=n, k=k, backend=backend, config=keyed)
        if labels is None:
            return result
        result.purity = purity_at(indices, labels) or None
        if "steps" in art:
            names = json.loads(art.attr("steps", "[]"))
            clean = art.read("steps/clean/indices") if "clean" in names else None
            if clean is not None:
                # The SCAN baseline: plain top-k of the clean view, i.e. the first k step-1 columns.
                result.steps.append(_step_row("knn", "clean", clean[:, :k], labels))
            for name in names:
                group = f"steps/{name}"
                views = json.loads(art.h5[group].attrs.get("views", "[]"))
                result.steps.append(_step_row(name, ",".join(views), art.read(f"{group}/indices"), labels))
    return result


def _step_row(name: str, views: str, indices: np.ndarray, labels: np.ndarray) -> dict:
    return {"step": name, "views": views, "k": int(indices.shape[1]), "purity": neighbor_purity(indices, labels)}
