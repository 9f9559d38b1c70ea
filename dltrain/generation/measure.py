"""Score finished runs' samples the same way, beside the floor that real data reaches:

    python -m dltrain.generation.measure RUN_DIR [RUN_DIR ...] [--samples N]

For each run (a GAN, a diffusion model, or a VAE, whose prior samples are decoded), N samples
(seed 0) against the test split of the run's data, with the feature network of that data
(trained once, kept in trainer.fid_cache); then the floor: N real samples of the validation
split, held out from training like the test split, against the same test statistics — the
fid that a perfect generator would get from sampling noise alone. What docs/generation.md
reports was measured with this.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dltrain.data import build_data
from dltrain.data.tasks import as_generation
from dltrain.generation.draw import model_samples
from dltrain.generation.features import feature_network
from dltrain.generation.fid import feature_stats, frechet_distance
from dltrain.use.loaded import load_run


def measure(run_dirs: list[Path], samples: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """{run (or "real held-out split"): {fid, seconds}} for the runs' samples (see the module's
    docstring); the runs must share their data."""
    results: dict[str, dict[str, float]] = {}
    data = None
    for run_dir in run_dirs:
        run = load_run(run_dir, "cpu")
        if data is None:
            data = as_generation(build_data(run.config["data"], "cpu"))
            features = feature_network(data, run.config["trainer"].get("fid_cache"), run.device)
            test = feature_stats(features.of(data.test.x))
        started = time.perf_counter()
        fake, _ = model_samples(run.model, samples, seed, int(data.spec.num_classes or 0))
        fid = frechet_distance(test, feature_stats(features.of(fake.reshape(
            len(fake), *data.spec.input_shape))))
        results[str(run_dir)] = {"fid": round(fid, 2),
                                 "sample_s": round(time.perf_counter() - started, 1),
                                 "wall_s": run.summary.get("wall_s"),
                                 "steps": run.summary.get("steps")}
    assert data is not None
    floor = frechet_distance(test, feature_stats(features.of(data.val.x[:samples])))
    results["real held-out split"] = {"fid": round(floor, 2)}
    results["feature network"] = {"accuracy": round(features.accuracy, 4)}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--samples", type=int, default=1000)
    ns = p.parse_args()
    torch.set_grad_enabled(False)
    print(json.dumps(measure(ns.runs, ns.samples), indent=2))


if __name__ == "__main__":
    main()
