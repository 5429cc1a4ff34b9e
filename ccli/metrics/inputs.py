"""Reading label vectors for `ccli eval`: predictions artifacts, .npy, .txt and .csv files.

Every problem with an input becomes a BadInput sentence naming the option and file, so a
shell user sees e.g. "--labels y.npy contains 3 NaN values" rather than a numpy traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccli.errors import BadInput

TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
ARRAY_SUFFIXES = (".npy",) + TEXT_SUFFIXES
ARTIFACT_SUFFIXES = (".h5", ".hdf5")


def _check_file(path: Path, label: str) -> None:
    if not path.exists():
        raise BadInput(f"{label} does not exist.")
    if path.is_dir():
        raise BadInput(f"{label} is a directory, not a file.")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise BadInput(f"{label} cannot be read ({exc.strerror}).") from exc


def _read_text_column(path: Path, label: str) -> np.ndarray:
    """One number per line (an optional non-numeric header line is skipped)."""
    delimiter = "," if path.suffix == ".csv" else ("\t" if path.suffix == ".tsv" else None)
    header_rows = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            if not line.strip():
                header_rows += 1
                continue
            first = line.split(delimiter) if delimiter else line.split()
            if len(first) != 1:
                raise BadInput(f"{label} has {len(first)} columns; ccli eval expects one label per line.")
            try:
                float(first[0])
            except ValueError:
                header_rows += 1  # a header such as "label"
            break
        else:
            return np.empty(0)
    try:
        # numpy's C parser: ~10x faster than a Python loop on millions of lines.
        return np.loadtxt(path, dtype=np.float64, delimiter=delimiter, skiprows=header_rows, ndmin=1)
    except ValueError as exc:
        raise BadInput(f"{label} contains a value that is not a number ({str(exc).splitlines()[0]}).") from exc


def _as_integer_labels(values: np.ndarray, label: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "USV":
        raise BadInput(f"{label} holds {values.dtype} values, not integer labels.")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise BadInput(f"{label} has shape {values.shape}; labels must be a 1-D vector.")
    if values.size == 0:
        raise BadInput(f"{label} is empty.")
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "f":
        bad = np.isnan(values) | np.isinf(values)
        if bad.any():
            raise BadInput(f"{label} contains {int(bad.sum())} NaN or infinite value(s).")
        fractional = values != np.round(values)
        if fractional.any():
            first = values[np.argmax(fractional)]
            raise BadInput(f"{label} contains {int(fractional.sum())} non-integer value(s) (e.g. {first:g}).")
        return values.astype(np.int64)
    raise BadInput(f"{label} holds {values.dtype} values, not integer labels.")


def read_label_file(path: Path, option: str, *, allow_probabilities: bool = False) -> np.ndarray:
    """A 1-D integer label vector from .npy/.txt/.csv.

    With `allow_probabilities`, a 2-D float array of K > 1 columns is read as per-sample
    cluster probabilities and reduced to its argmax.
    """
    label = f"{option} {path}".strip()
    _check_file(path, label)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadInput(f"{label} is not a readable .npy file ({exc}).") from exc
        if allow_probabilities and values.ndim == 2 and values.shape[1] > 1 and values.dtype.kind == "f":
            if not np.isfinite(values).all():
                raise BadInput(f"{label} contains NaN or infinite probabilities.")
            values = values.argmax(axis=1)
    elif suffix in TEXT_SUFFIXES:
        values = _read_text_column(path, label)
    else:
        raise BadInput(f"{label} has an unsupported extension '{path.suffix}' (use .h5, .npy, .txt or .csv).")
    return _as_integer_labels(values, label)


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted labels, true labels or None) from a predictions artifact or an array file."""
    if path.suffix.lower() in ARTIFACT_SUFFIXES:
        from ccli.store import open_artifact

        with open_artifact(path, "predictions") as art:
            predicted = _as_integer_labels(art.read("labels"), f"{path} (labels)")
            targets = art.read("targets") if "targets" in art else None
        if targets is not None and (targets < 0).all():
            targets = None
        return predicted, targets
    return read_label_file(path, "", allow_probabilities=True), None


def read_labels(path: Path) -> np.ndarray:
    """True labels from --labels: an array file, or any artifact that carries them."""
    if path.suffix.lower() in ARTIFACT_SUFFIXES:
        from ccli.store import open_artifact

        label = f"--labels {path}"
        with open_artifact(path, what="--labels") as art:
            name = "targets" if art.kind == "predictions" else "labels"
            if name not in art:
                raise BadInput(f"{label} is a {art.kind} artifact without true labels.")
            values = _as_integer_labels(art.read(name), label)
        if (values < 0).all():
            raise BadInput(f"{label} carries no known labels (all are -1).")
        return values
    return read_label_file(path, "--labels")


# ------------------------------------------------------------------------------------------
# Labels as users have them: id,label tables, class names, -1 = unknown
# ------------------------------------------------------------------------------------------
from dataclasses import dataclass  # noqa: E402

ID_HEADERS = {"id", "ids", "filename", "file", "path", "name", "image", "sample", "fname"}
LABEL_HEADERS = {"label", "labels", "class", "class_name", "target", "y", "truth", "category"}
UNKNOWN = {"", "-1", "unknown", "?"}


@dataclass
class LabelTable:
    """Labels as read from a file: optional ids (for joining) and raw values (ints or strings)."""

    ids: list[str] | None
    values: np.ndarray


def read_lines(path: Path, option: str) -> list[str]:
    label = f"{option} {path}".strip()
    _check_file(path, label)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{label} is not UTF-8 text ({exc.reason}).") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_names(value: str | None) -> list[str] | None:
    """--names: a text file of one class name per line, or a comma-separated list."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        names = read_lines(path, "--names")
    else:
        names = [n.strip() for n in value.split(",")]
    if not names or any(not n for n in names):
        raise BadInput(f"--names {value} must list class names: a file with one per line, or a,b,c.")
    if len(set(names)) != len(names):
        raise BadInput(f"--names {value} lists a class name twice.")
    return names


def read_label_table(path: Path, option: str) -> LabelTable:
    """One label per row (.npy/.txt/.csv), or a two-column id,label CSV; a header row is optional."""
    import csv

    label = f"{option} {path}".strip()
    _check_file(path, label)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadInput(f"{label} is not a readable .npy file of labels ({exc}).") from exc
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise BadInput(f"{label} has shape {values.shape}; labels must be a 1-D vector.")
        return LabelTable(None, values)
    if suffix not in TEXT_SUFFIXES:
        raise BadInput(f"{label} has an unsupported extension '{path.suffix}' (use .npy, .txt, .csv or .tsv).")
    delimiter = "\t" if suffix == ".tsv" else ","
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = [[c.strip() for c in row] for row in csv.reader(fh, delimiter=delimiter) if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise BadInput(f"{label} is not UTF-8 text ({exc.reason}).") from exc
    if suffix == ".txt" and rows and all(len(r) == 1 for r in rows[:5]):
        rows = [r[0].split() for r in rows]
    if not rows:
        raise BadInput(f"{label} is empty.")
    width = len(rows[0])
    if width > 2:
        raise BadInput(f"{label} has {width} columns; give one label per line, or two columns id,label.")
    head = [c.lower() for c in rows[0]]
    if (width == 1 and head[0] in LABEL_HEADERS) or (width == 2 and (head[0] in ID_HEADERS or head[1] in LABEL_HEADERS)):
        rows = rows[1:]
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise BadInput(f"{label} row {bad + 1} has {len(rows[bad])} columns, expected {width}.")
    if not rows:
        raise BadInput(f"{label} has a header but no labels.")
    if width == 1:
        return LabelTable(None, np.array([r[0] for r in rows], dtype=object))
    return LabelTable([r[0] for r in rows], np.array([r[1] for r in rows], dtype=object))


def _encode(values: np.ndarray, names: list[str] | None, label: str) -> tuple[np.ndarray, list[str] | None]:
    """Raw label values → int64 codes (-1 = unknown) and class names (when the values were names)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iubf":
        text = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in values.tolist()]
        known = [t for t in text if t.lower() not in UNKNOWN]
        try:
            numbers = np.array([-1.0 if t.lower() in UNKNOWN else float(t) for t in text], dtype=np.float64)
        except ValueError:
            numbers = None
        if numbers is None:
            # Class names: the given --names fix their order, else sorted order does.
            classes = list(names) if names is not None else sorted(set(known))
            lookup = {c: i for i, c in enumerate(classes)}
            missing = sorted(set(known) - set(lookup))
            if missing:
                raise BadInput(f"{label} has class names not in --names ({', '.join(missing[:3])}).")
            return np.array([lookup.get(t, -1) for t in text], dtype=np.int64), classes
        values = numbers
    codes = _as_integer_labels(values, label)
    if (codes < -1).any():
        raise BadInput(f"{label} contains negative labels other than -1 (unknown), e.g. {int(codes[codes < -1][0])}.")
    if names is not None and codes.size and codes.max() >= len(names):
        raise BadInput(f"{label} has labels up to {int(codes.max())} but only {len(names)} class names.")
    return codes, names


def align_labels(table: LabelTable, ids: list[str] | None, n: int, option: str, path: Path, *,
                 names: list[str] | None = None, source: str = "the predictions") -> tuple[np.ndarray, list[str] | None]:
    """Labels for the n samples (in their order): joined by id when the table has ids, else by row.

    Samples the table does not mention get -1 (unknown); ids in the table that match no sample are
    an error naming how many and the first few.
    """
    label = f"{option} {path}".strip()
    codes, class_names = _encode(table.values, names, label)
    if class_names is not None and len(class_names) > n:
        raise BadInput(f"{label} names {len(class_names):,} classes but {source} has only {n:,} samples.")
    if table.ids is None:
        if len(codes) != n:
            raise BadInput(f"{label} has {len(codes):,} labels but {source} has {n:,} samples.")
        return codes, class_names
    sample_ids = ids if ids is not None else [str(i) for i in range(n)]
    row_of = _id_lookup(sample_ids)
    out = np.full(n, -1, dtype=np.int64)
    unmatched = []
    for key, code in zip(table.ids, codes):
        row = row_of(key)
        if row is None:
            unmatched.append(key)
        else:
            out[row] = code
    if unmatched:
        raise BadInput(f"{label} has {len(unmatched):,} id(s) that match no sample of {source} "
                       f"(e.g. {', '.join(unmatched[:3])}; its ids look like {', '.join(sample_ids[:2])}).")
    return out, class_names


def _id_lookup(sample_ids: list[str]):
    """id → row: exact, else by file name, else by file name without extension (when unique)."""
    exact = {s: i for i, s in enumerate(sample_ids)}

    def unique_map(keyfn):
        seen: dict[str, int] = {}
        dup: set[str] = set()
        for i, s in enumerate(sample_ids):
            k = keyfn(s)
            if k in seen:
                dup.add(k)
            seen[k] = i
        return {k: v for k, v in seen.items() if k not in dup}

    by_name = by_stem = None

    def find(key: str):
        nonlocal by_name, by_stem
        if key in exact:
            return exact[key]
        if by_name is None:
            by_name = unique_map(lambda s: s.replace("\\", "/").rsplit("/", 1)[-1])
            by_stem = unique_map(lambda s: s.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0])
        base = key.replace("\\", "/").rsplit("/", 1)[-1]
        if base in by_name:
            return by_name[base]
        return by_stem.get(base) if "." not in base else None

    return find


@dataclass
class PredictionsTable:
    """A predictions artifact read whole: cluster labels, probabilities, true labels, ids, names."""

    labels: np.ndarray
    probs: np.ndarray | None
    targets: np.ndarray | None
    ids: list[str]
    class_names: list[str] | None
    path: Path


def read_predictions_table(path: Path) -> PredictionsTable:
    from ccli.store import open_artifact
    from ccli.store.sample_ids import read_class_names, read_ids

    with open_artifact(path, "predictions") as art:
        labels = _as_integer_labels(art.read("labels"), f"{path} (labels)")
        probs = art.read("probs").astype(np.float32) if "probs" in art else None
        targets = art.read("targets").astype(np.int64) if "targets" in art else None
        ids = read_ids(art)
        names = read_class_names(art)
    if len(ids) != len(labels):
        raise BadInput(f"{path} is corrupt: {len(ids):,} ids for {len(labels):,} predictions.")
    return PredictionsTable(labels, probs, targets, ids, names, Path(path))
