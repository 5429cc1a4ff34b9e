"""Neighbors or features artifact → graph artifact, through the cache (what `ccli graph` runs).

Graph artifacts store one CSR matrix (`indptr`, `indices`, `data`, attr `shape`): the
symmetric kNN adjacency (builder 'knn', with GCC's node weights under `weights` and the
normalised Laplacian as a second CSR under `laplacian/`) or the self-expression affinity
A = C + Cᵀ (builder 'self_expressive').
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ccli import log
from ccli.errors import BadInput
from ccli.graph.knn_graph import edge_purity, gcc_node_weights, knn_adjacency, neighbor_table, normalized_laplacian
from ccli.graph.self_expressive import SelfExpressiveParams, check_params, self_expressive_graph
from ccli.neighbors.features import read_labels, read_matrix
from ccli.store import ArtifactWriter, cache_root, content_key, get_or_compute, open_artifact, output_path


@dataclass
class GraphResult:
    path: Path
    key: str
    cached: bool
    builder: str
    n: int
    edges: int
    mean_degree: float
    isolated: int
    edge_purity: float | None
    config: dict

    def as_json(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def check_same_features(neighbors_art, features_art) -> None:
    """A neighbors file must have been computed from the features given alongside it."""
    if features_art.key not in neighbors_art.inputs:
        made_from = neighbors_art.inputs[0] if neighbors_art.inputs else "unknown"
        raise BadInput(
            f"{neighbors_art.path} was computed from features with key {made_from}, not from "
            f"{features_art.path} (key {features_art.key}); recompute it with `ccli neighbors {features_art.path}`."
        )


def _write_csr(writer: ArtifactWriter, matrix: sp.csr_matrix, prefix: str = "") -> None:
    n = matrix.shape[0]
    index_type = np.int32 if matrix.nnz < 2**31 - 1 and n < 2**31 - 1 else np.int64
    writer.write(f"{prefix}indptr", matrix.indptr.astype(np.int64))
    writer.write(f"{prefix}indices", matrix.indices.astype(index_type))
    writer.write(f"{prefix}data", matrix.data.astype(np.float32))


def read_csr(art, prefix: str = "") -> sp.csr_matrix:
    """A CSR matrix stored by `_write_csr` (the main graph, or prefix 'laplacian/')."""
    shape = tuple(int(s) for s in art.attr("shape"))
    return sp.csr_matrix((art.read(f"{prefix}data"), art.read(f"{prefix}indices"), art.read(f"{prefix}indptr")), shape=shape)


def _resolve_neighbors(
    input_path: Path, k: int, neighbors_path: Path | None, features_path: Path | None, cache_dir, device: str
) -> Path:
    """The neighbors artifact to build from: the input itself, --neighbors, or computed from features."""
    with open_artifact(input_path, ("neighbors", "features")) as art:
        kind = art.kind
    if kind == "neighbors":
        if neighbors_path is not None:
            raise BadInput(f"{input_path} is already a neighbors artifact; drop --neighbors.")
        if features_path is not None:
            with open_artifact(input_path, "neighbors") as nb, open_artifact(features_path, "features", what="--features") as ft:
                check_same_features(nb, ft)
        return Path(input_path)
    if neighbors_path is not None:
        with open_artifact(neighbors_path, "neighbors", what="--neighbors") as nb, open_artifact(input_path, "features") as ft:
            check_same_features(nb, ft)
        return Path(neighbors_path)
    from ccli.neighbors.build import compute_neighbors
    from ccli.neighbors.config import NeighborsConfig

    with open_artifact(input_path, "features") as ft:
        n = ft.shape("features")[0]
    if k >= n:
        raise BadInput(f"--knn {k} is not smaller than the number of points in {input_path} (N={n}).")
    path = compute_neighbors(input_path, NeighborsConfig(k=k), cache_dir=cache_dir, device=device).path
    log.info(f"{input_path} is a features artifact: its {k} nearest neighbours are {path}.")
    return path


def build_knn_graph(
    input_path: str | Path,
    k: int,
    *,
    num_pos: int = 3,
    neighbors_path: str | Path | None = None,
    features_path: str | Path | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    device: str = "auto",
) -> GraphResult:
    """GCC's symmetric kNN graph, its normalised Laplacian and node weights (cctc-and-cdec.md §7)."""
    if k < 1:
        raise BadInput(f"--knn {k} must be at least 1.")
    if num_pos < 1:
        raise BadInput(f"--num-pos {num_pos} must be at least 1.")
    nb_path = _resolve_neighbors(Path(input_path), k, neighbors_path and Path(neighbors_path), features_path and Path(features_path), cache_dir, device)
    with open_artifact(nb_path, "neighbors") as nb:
        n, stored = nb.shape("indices")
        has_self = not bool(nb.attr("exclude_self", True))
        if k >= n:
            raise BadInput(f"--knn {k} is not smaller than the number of points in {nb_path} (N={n}).")
        if k > stored - (1 if has_self else 0):
            raise BadInput(f"--knn {k} asks for more neighbours than {nb_path} stores (k={stored}); rebuild it with a larger -k.")
        config = {"builder": "knn", "k": k, "num_pos": num_pos}
        key = content_key("graph", config, [nb.key])
        # The neighbours' own inputs (their features) come too, so a consumer given the features
        # can check that this graph was made from them.
        nb_keys = [nb.key, *nb.inputs]
    path = output_path(out, cache_root(cache_dir), "graph", key, force=force)

    def build(target: Path) -> None:
        started = time.perf_counter()
        with open_artifact(nb_path, "neighbors") as nb:
            table = neighbor_table(nb.read("indices"), k, has_self=has_self, source=str(nb_path))
            labels = nb.read("labels").astype(np.int64) if "labels" in nb else None
        adjacency = knn_adjacency(table, n)

        def extras(w: ArtifactWriter) -> None:
            _write_csr(w, normalized_laplacian(adjacency), "laplacian/")
            w.write("weights", gcc_node_weights(adjacency, num_pos))

        attrs = {"builder": "knn", "k": k, "num_pos": num_pos, "weights_kind": "gcc_omega", "laplacian": "normalized"}
        _store_graph(target, key, config, nb_keys, adjacency, labels, attrs, extras)
        log.info(f"kNN graph: {n:,} nodes, {adjacency.nnz:,} directed edges in {time.perf_counter() - started:.1f}s → {target}")

    return _compute_and_summarise(path, key, build, force, config)


def build_self_expressive_graph(
    features_path: str | Path,
    params: SelfExpressiveParams,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> GraphResult:
    """Chunked self-expression affinity A = C + Cᵀ from a features artifact (selfpaced-and-graph.md §4.6)."""
    check_params(params)
    config = {"builder": "self_expressive", **{k: v for k, v in asdict(params).items() if k != "device"}}
    if params.mode == "closed":
        for name in ("norm", "steps", "lr", "init"):
            config.pop(name)  # the closed form has no optimiser
    else:
        config.pop("diagonal")
    with open_artifact(features_path, "features") as art:
        n = art.shape("features")[0]
        if n < 2:
            raise BadInput(f"{features_path} has {n} point(s); a self-expressive graph needs at least 2.")
        key = content_key("graph", config, [art.key])
        features_key = art.key
    path = output_path(out, cache_root(cache_dir), "graph", key, force=force)

    def build(target: Path) -> None:
        started = time.perf_counter()
        with open_artifact(features_path, "features") as art:
            z = read_matrix(art, "features")
            labels = read_labels(art)
        total = -(-n // params.chunk_size)
        log.info(f"self-expressive graph ({params.mode}): {n:,} points in {total} chunk(s) of ≤{params.chunk_size}")
        graph = self_expressive_graph(z, params, progress=lambda done, all_: log.debug(f"  chunk {done}/{all_}"))
        _store_graph(target, key, config, [features_key], graph, labels, {"builder": "self_expressive"})
        log.info(f"self-expressive graph: {graph.nnz:,} directed edges in {time.perf_counter() - started:.1f}s → {target}")

    return _compute_and_summarise(path, key, build, force, config)


def _store_graph(target: Path, key: str, config: dict, input_keys: list[str], graph, labels, attrs: dict,
                 extras=None) -> None:
    """One graph artifact: the symmetric CSR, whatever `extras` adds, and the labels when known."""
    n = graph.shape[0]
    attrs = {"shape": np.array([n, n], dtype=np.int64), "symmetric": True, "parameters": json.dumps(config), **attrs}
    with ArtifactWriter(target, "graph", key, config, input_keys, attrs) as w:
        _write_csr(w, graph)
        if extras is not None:
            extras(w)
        if labels is not None:
            w.write("labels", labels)


def _compute_and_summarise(path: Path, key: str, build, force: bool, config: dict) -> GraphResult:
    cached = get_or_compute(path, "graph", key, build, force=force)
    if cached:
        log.info(f"cache hit: {path}")
    return _summarise(path, key, cached, config)


def _summarise(path: Path, key: str, cached: bool, config: dict) -> GraphResult:
    with open_artifact(path, "graph") as art:
        graph = read_csr(art)
        labels = art.read("labels").astype(np.int64) if "labels" in art else None
        builder = str(art.attr("builder", ""))
    degree = np.diff(graph.indptr)
    positive = graph.copy()
    positive.data = (positive.data > 0).astype(np.float32)
    positive.eliminate_zeros()
    return GraphResult(
        path=path,
        key=key,
        cached=cached,
        builder=builder,
        n=graph.shape[0],
        edges=int(graph.nnz),
        mean_degree=float(degree.mean()) if len(degree) else 0.0,
        isolated=int((degree == 0).sum()),
        edge_purity=edge_purity(positive, labels),
        config=config,
    )
