"""Two gloo processes compute the CACR InfoNCE on halves of a batch; the result must equal
the single-process loss on the whole batch, which needs every process's negatives."""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clism.pretraining.model import gather_with_grad, info_nce


def worker(rank: int, out_dir: str, anchors: torch.Tensor, positives: torch.Tensor) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("GATHER_PORT", "29517"))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    half = anchors.size(0) // 2
    a = anchors[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    p = positives[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    loss = info_nce(a, p, 0.05)
    loss.backward()
    negatives = gather_with_grad(p.detach()).size(0)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"loss": loss.item(), "grads": a.grad is not None and p.grad is not None,
                   "negatives": negatives}, fh)
    dist.barrier()
    dist.destroy_process_group()
    # gloo's background threads can abort a normal interpreter exit ("terminate called
    # without an active exception"); the result is on disk, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    anchors, positives = torch.randn(8, 16), torch.randn(8, 16)
    full = info_nce(anchors, positives, 0.05).item()
    mp.spawn(worker, args=(out_dir, anchors, positives), nprocs=2, join=True)
    results = [json.load(open(os.path.join(out_dir, f"rank{r}.json"))) for r in range(2)]
    mean_of_halves = sum(r["loss"] for r in results) / 2
    with open(os.path.join(out_dir, "gather.json"), "w") as fh:
        json.dump({"full": full, "distributed": mean_of_halves,
                   "distributed_equals_full_batch": abs(full - mean_of_halves) < 1e-5 and all(r["grads"] for r in results),
                   "negatives_seen": min(r["negatives"] for r in results)}, fh)
