"""Pre-training throughput on this machine: what batching and frozen embeddings buy (issue 18, item 4).

Arms, each a real `clism pretrain` run through the engine (forward, backward, AdamW, logging)
on the same instances with the same settings, run in the order A B C C B A so that drift
in the machine's speed falls on every arm alike; per arm the median of its two runs:
  shuffled      the default: random batches, padded to the longest in each
  grouped       --group-by-length: batches of similar length (less padding)
  grouped+frozen  the same with --freeze-word-embeddings (no gradient or AdamW state for
                the 250K x 384 embedding matrix)
Printed: real tokens/s (padding not counted), instances/s, the padding share, and each arm's
ratio to shuffled; and the instances one hour would see.

    python bench/pretrain_throughput.py --data runs/reproduce-dev-defaults/clism-data --steps 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="multilingual-e5-small-q4")
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-side-tokens", type=int, default=64)
    parser.add_argument("--mlm", default="false", choices=["true", "false"])
    parser.add_argument("--max-instances", type=int, default=4000, help="the pool batches are drawn from")
    args = parser.parse_args()

    import torch

    from clism.pretraining.data import build_pretrain_features, collate_pretrain, load_instances
    from clism.pretraining.options import PretrainOptions
    from clism.pretraining.train import load_pretrain_model, pretrain
    from clism.training.engine import length_grouped_batches, read_log, shuffled_batches

    arms = {"shuffled": {}, "grouped": {"group_by_length": True},
            "grouped+frozen": {"group_by_length": True, "freeze_word_embeddings": True}}
    common = dict(model=args.model, data=args.data, batch_size=args.batch_size, max_steps=args.steps,
                  warmup_steps=1, max_side_tokens=args.max_side_tokens, dropout=0.0, lr=5e-5,
                  mlm=args.mlm == "true", checkpoint_every=0, log_every=args.steps, max_instances=args.max_instances)
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for i, arm in enumerate(list(arms) + list(reversed(arms))):
            out = Path(tmp) / f"{i}-{arm}"
            pretrain(PretrainOptions(**common, **arms[arm], out=str(out)))
            last = read_log(out)[-1]
            runs[arm].append({"tokens_per_s": last["tokens_per_s"], "examples_per_s": last["examples_per_s"]})

    # padding share of each batching over the steps the runs took (same seed, same plan)
    _, tokenizer, que_id, _ = load_pretrain_model(PretrainOptions(model=args.model))
    features, _ = build_pretrain_features(load_instances(args.data)[: args.max_instances], tokenizer, que_id,
                                          args.max_side_tokens)
    special = set(tokenizer.all_special_ids)
    plans = {"shuffled": shuffled_batches(len(features), args.batch_size, 1)(0)[: args.steps],
             "grouped": length_grouped_batches([len(f.joint_ids) + len(f.english_ids) for f in features],
                                               args.batch_size, 1)(0)[: args.steps]}
    padding = {}
    for name, plan in plans.items():
        real = padded = 0
        for batch in plan:
            b = collate_pretrain([features[i] for i in batch], tokenizer.pad_token_id, special)
            real += int(b["joint_mask"].sum() + b["english_mask"].sum())
            padded += b["joint_mask"].numel() + b["english_mask"].numel()
        padding[name] = 1 - real / padded

    print(f"{args.steps} steps of {args.batch_size}, {args.max_side_tokens} tokens per side, MLM {args.mlm}, "
          f"{torch.get_num_threads()} threads; order A B C C B A, median of 2 runs per arm")
    base = statistics.median(r["tokens_per_s"] for r in runs["shuffled"])
    print("| arm | tokens/s | instances/s | padding | vs shuffled | instances per hour |")
    print("|---|---|---|---|---|---|")
    for arm, rs in runs.items():
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        eps = statistics.median(r["examples_per_s"] for r in rs)
        pad = padding["shuffled" if arm == "shuffled" else "grouped"]
        print(f"| {arm} | {tps:,.0f} | {eps:.2f} | {pad:.0%} | {tps / base:.2f}x | {eps * 3600:,.0f} |")
    print(json.dumps({"runs": runs, "padding": padding}))


if __name__ == "__main__":
    main()
