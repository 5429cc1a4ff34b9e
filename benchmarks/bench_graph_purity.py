"""How pure the `graph` method's pairs are on a pretrained autoencoder's codes (issue 12).

    python benchmarks/bench_graph_purity.py RUN/checkpoint-pretrain.pt [--batch 599] [--lams 0.01,1,100]

Encodes every image of the run's data (un-augmented view), splits the codes three times at random
into batches of --batch, and per batch builds A = C + Cᵀ from the closed-form C of `se_mode: closed`
(and the exact diagonal-constrained minimiser −Q/Q_ii) on four versions of the codes: raw, centred,
L2-normalised, centred then L2-normalised (`se_codes: centred_l2`); plus a cosine kNN of the same
codes. Prints, per version, the share of each anchor's top-5 of A that is same-class and the same
for its strongest neighbour (the Y′ row). Labels are read for the figures only. One thread.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--batch", type=int, default=599)
    ap.add_argument("--lams", default="0.01,1,100")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from ccli.data.augment import eval_view
    from ccli.data.sources import load_dataset
    from ccli.methods.graph import closed_coefficients
    from ccli.methods.selfpaced import encode_all
    from ccli.models.autoencoder import build_autoencoder

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    rec, bb = state["config"], state["backbone"]
    cfg = rec["config"]
    ds = load_dataset(rec["data"], rec["split"])
    y = torch.from_numpy(ds.labels)
    images = torch.from_numpy(np.ascontiguousarray(ds.images)).permute(0, 3, 1, 2)
    ae = build_autoencoder(bb["name"], bb["in_channels"], bb["image_size"], int(cfg["latent_dim"]), cfg["bottleneck_act"])
    ae.load_state_dict({k[3:]: v for k, v in state["model"].items() if k.startswith("ae.")})
    ae.eval()
    norm = state["normalization"]
    (h,) = encode_all(ae.encoder, images, [eval_view(bb["image_size"])], norm["mean"], norm["std"], "cpu", 512)
    h = h.double()
    lams = [float(v) for v in args.lams.split(",")]

    def precision(a, lab):
        a = a.clone()
        a.fill_diagonal_(-float("inf"))
        top = a.topk(5, 1).indices
        return (lab[top] == lab[:, None]).double().mean().item(), (lab[a.argmax(1)] == lab).double().mean().item()

    results: dict = {}
    rng = np.random.default_rng(0)
    b = args.batch
    for _ in range(3):
        perm = torch.from_numpy(rng.permutation(len(h)))
        for start in range(0, len(h) - b + 1, b):
            idx = perm[start:start + b]
            z, lab = h[idx], y[idx]
            zc = z - z.mean(0)
            for name, zv in (("raw", z), ("centred", zc), ("l2", F.normalize(z, dim=1)), ("centred_l2", F.normalize(zc, dim=1))):
                for lam in lams:
                    c = closed_coefficients(zv, lam)
                    results.setdefault((name, "closed", lam), []).append(precision(c + c.t(), lab))
                    d = zv.shape[1]
                    q = torch.eye(b, dtype=zv.dtype) - lam * zv @ torch.linalg.solve(
                        torch.eye(d, dtype=zv.dtype) + lam * zv.t() @ zv, zv.t())
                    c = -q / q.diag()[:, None]
                    c.fill_diagonal_(0.0)
                    results.setdefault((name, "exact", lam), []).append(precision(c + c.t(), lab))
                zn = F.normalize(zv, dim=1)
                results.setdefault((name, "cosine", 0.0), []).append(precision(zn @ zn.t(), lab))
    for (name, kind, lam), values in results.items():
        top5, nn1 = np.mean(values, axis=0)
        print(f"{name:11s} {kind:6s} lam={lam:<6g} top-5 {top5:.3f}  strongest neighbour {nn1:.3f}")


if __name__ == "__main__":
    main()
