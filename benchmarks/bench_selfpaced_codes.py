"""What each stage of a `selfpaced` run did to its codes: k-means, centres, pairs and the head, per checkpoint.

    python benchmarks/bench_selfpaced_codes.py RUN_DIR [--stages pretrain,stage1,stage2] [--batches 20]

For every `checkpoint-<stage>.pt` of the run folder: the codes h of all images (un-augmented
views); their per-dimension std (a shrinking std is the centre loss, Eq. 3.2, pulling every
code in); k-means (K of the run, 10 restarts, seed 42) ACC on h, on the L2-normalised h and on
the batch-centred normalised h; for stages with centres, the ACC of argmax p (Eq. 3.3) and the
cluster sizes; the pairs stage 2 would mine at (ζ, γ) of the run on random batches of its batch
size, with `feature` and `centred` similarities: positives and negatives per anchor, the share
of positives that are same-class (precision), of same-class pairs that are positives (recall),
and of negatives that are different-class; for stage 2, the head's argmax ACC, sizes and
batch marginal. `--eq34 N` (stages without centres yet, i.e. pretrain): N repeated Eq. 3.4
updates from the k-means centres on the fixed codes (no training), with the centres' mean
pairwise distance and the argmax-p ACC after each. Needs the labels (a labelled dataset). One thread; prints one line per figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--stages", default="pretrain,stage1,stage2")
    ap.add_argument("--batches", type=int, default=20, help="random batches for the pair counts")
    ap.add_argument("--eq34", type=int, default=0, help="repeated Eq. 3.4 updates on the pretrained codes")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from ccli.data.augment import eval_view
    from ccli.data.sources import load_dataset
    from ccli.fit.kmeans import kmeans
    from ccli.losses import selfpaced as L
    from ccli.data.gpu_augment import sample_batch_params
    from ccli.methods.autoencoding import view_of
    from ccli.methods.selfpaced import Config, _modules, encode_all
    from ccli.methods.autoencoding import latent_dim
    from ccli.metrics.evaluation import score_labelling
    from ccli.models.autoencoder import build_autoencoder

    def acc(labels) -> float:
        return round(float(score_labelling(y, np.asarray(labels))["acc"]), 4)

    SelfPacedNet, _ = _modules()
    dataset = images = y = None
    rng = np.random.default_rng(0)
    for stage in args.stages.split(","):
        file = args.run / f"checkpoint-{stage}.pt"
        if not file.is_file():
            print(f"{stage}: no {file.name}")
            continue
        state = torch.load(file, map_location="cpu", weights_only=False)
        rec = state["config"]
        raw = dict(rec["config"])
        raw.pop("engine", None)
        config = Config(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()
                           if k in Config.__dataclass_fields__})
        bb, k = state["backbone"], int(state["num_clusters"])
        if dataset is None:
            dataset = load_dataset(rec["data"], rec["split"])  # native size; the view resizes, as in training
            y = dataset.labels
            images = torch.from_numpy(np.ascontiguousarray(dataset.images)).permute(0, 3, 1, 2)
        ae = build_autoencoder(bb["name"], bb["in_channels"], bb["image_size"], latent_dim(config), config.bottleneck_act)
        model = SelfPacedNet(ae, k, config.mlp_hidden)
        model.load_state_dict(state["model"])
        model.eval()
        norm = state["normalization"]
        (h,) = encode_all(model.backbone, images, [eval_view(bb["image_size"])], norm["mean"], norm["std"], "cpu",
                          config.eval_batch_size)
        print(f"{stage}: code per-dim std mean {h.std(0).mean().item():.3f}, norm mean {h.norm(dim=1).mean().item():.3f}")
        for name, feats in (("h", h), ("l2(h)", F.normalize(h, dim=1)),
                            ("l2(h - mean)", F.normalize(h - h.mean(0), dim=1))):
            labels, centroids, _, _ = kmeans(feats.numpy(), k, n_init=10, seed=42)
            print(f"{stage}: k-means on {name}: ACC {acc(labels)}")
            if name == "h" and args.eq34 and not bool(model.centres_ready):
                size, c = bb["image_size"], bb["in_channels"]
                aug = view_of(config, size, c)  # the method's fixed augmented copy T(X) (Alg. 3.1 step 2)
                params = sample_batch_params(aug, len(images), images.shape[2], images.shape[3], c,
                                             torch.Generator().manual_seed(config.seed + 7919), "cpu")
                (h_aug,) = encode_all(model.backbone, images, [aug], norm["mean"], norm["std"], "cpu",
                                      config.eval_batch_size, [params])
                mu = torch.from_numpy(centroids)
                for it in range(args.eq34 + 1):
                    p = L.student_t(h, mu, config.alpha)
                    print(f"{stage}: Eq. 3.4 update {it}: centre spread {torch.pdist(mu).mean().item():.3f}, mean max p "
                          f"{p.max(1).values.mean().item():.3f}, argmax p ACC {acc(p.argmax(1).numpy())}")
                    mu = L.weighted_centres(h_aug, p)
        if bool(model.centres_ready):
            p = L.student_t(h, model.centres, config.alpha)
            a = p.argmax(1).numpy()
            print(f"{stage}: argmax p (Eq. 3.3): ACC {acc(a)}, mean max p {p.max(1).values.mean().item():.3f}, "
                  f"sizes {np.bincount(a, minlength=k).tolist()}, centre spread {torch.pdist(model.centres).mean().item():.3f}")
        b = min(state["config"]["config"]["engine"]["batch_size"], len(h))
        for source in ("feature", "centred"):
            tot = dict(pos=0, tp=0, neg=0, tn=0, same=0)
            for _ in range(args.batches):
                idx = rng.choice(len(h), b, replace=False)
                hb = h[idx].float()
                if source == "centred":
                    hb = hb - hb.mean(0, keepdim=True)
                hn = F.normalize(hb, dim=1)
                pos, neg = L.threshold_pairs(hn @ hn.t(), config.zeta, config.gamma)
                yb = torch.from_numpy(y[idx])
                eq = (yb[:, None] == yb[None, :]) & ~torch.eye(b, dtype=torch.bool)
                tot["pos"] += int(pos.sum()); tot["tp"] += int((pos & eq).sum())
                tot["neg"] += int(neg.sum()); tot["tn"] += int((neg & ~eq).sum()); tot["same"] += int(eq.sum())
            anchors = args.batches * b
            print(f"{stage}: {source} pairs at ({config.zeta}, {config.gamma}): positives/anchor "
                  f"{tot['pos'] / anchors:.1f} (precision {tot['tp'] / max(1, tot['pos']):.3f}, recall "
                  f"{tot['tp'] / max(1, tot['same']):.3f}), negatives/anchor {tot['neg'] / anchors:.1f} "
                  f"(different-class {tot['tn'] / max(1, tot['neg']):.3f})")
        if stage == "stage2":
            with torch.no_grad():
                z = torch.cat([torch.softmax(model.head(h[i:i + 4096]), 1) for i in range(0, len(h), 4096)])
            a = z.argmax(1).numpy()
            print(f"{stage}: head argmax ACC {acc(a)}, sizes {np.bincount(a, minlength=k).tolist()}, "
                  f"marginal {json.dumps(np.round(z.mean(0).numpy(), 3).tolist())}")


if __name__ == "__main__":
    main()
