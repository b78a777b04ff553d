"""Cost of one pre-training step: CLISM+CACR+MLM vs MLM-only vs a bare encoder pass.

Same model, same instances, same batch, timed side by side in one run (interleaved
rounds, median of each), forward + backward + optimizer step. Also the share of a full
step spent preparing data (collation and masking, done on the training thread).

    python bench/pretrain_step.py --data runs/clism-data --batch-size 16 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="multilingual-e5-small-q4")
    parser.add_argument("--data", default="runs/clism-data")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args()

    from clism.pretraining.data import build_pretrain_features, collate_pretrain, load_instances, mask_tokens
    from clism.pretraining.model import LossSettings
    from clism.pretraining.train import PretrainOptions, load_pretrain_model

    model, tokenizer, que_id, _ = load_pretrain_model(PretrainOptions(model=args.model, dropout=args.dropout))
    instances = load_instances(args.data)[: args.batch_size * (args.rounds + 1)]
    full_features, _ = build_pretrain_features(instances, tokenizer, que_id, 128, use_clism=True)
    tlm_features, _ = build_pretrain_features(instances, tokenizer, que_id, 128, use_clism=False)
    special = set(tokenizer.all_special_ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def prepare(features, round_, mlm=True):
        batch = collate_pretrain(features[round_ * args.batch_size:(round_ + 1) * args.batch_size],
                                 tokenizer.pad_token_id, special)
        generator = torch.Generator().manual_seed(round_)
        candidates = batch.pop("mlm_candidates")
        if mlm:
            batch["joint_ids"], batch["mlm_labels"] = mask_tokens(batch["joint_ids"], candidates,
                                                                  tokenizer.mask_token_id, len(tokenizer), generator)
        return batch

    def step_full(batch):
        model.losses = LossSettings()
        model(**batch)["loss"].backward()

    def step_mlm(batch):
        model.losses = LossSettings(clism=False, cacr=False, mlm=True)
        model(**batch)["loss"].backward()

    def step_bare(batch):
        hidden = model.encoder(input_ids=batch["joint_ids"], attention_mask=batch["joint_mask"]).last_hidden_state
        hidden.float().pow(2).mean().backward()

    times = {"full": [], "mlm": [], "bare": [], "data": []}
    tokens = []
    for r in range(args.rounds + 1):  # round 0 warms up
        t = time.perf_counter()
        full_batch = prepare(full_features, r)
        data_s = time.perf_counter() - t
        mlm_batch = prepare(tlm_features, r)
        for name, fn, batch in (("full", step_full, full_batch), ("mlm", step_mlm, mlm_batch),
                                ("bare", step_bare, mlm_batch)):
            t = time.perf_counter()
            fn(batch)
            optimizer.step()
            optimizer.zero_grad()
            if r:
                times[name].append(time.perf_counter() - t)
        if r:
            times["data"].append(data_s)
            tokens.append(int(full_batch["joint_mask"].sum() + full_batch["english_mask"].sum()))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {args.model}, batch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"dropout {args.dropout}")
    print(f"full CLISM+CACR+MLM step: {med['full']:.2f} s  ({statistics.mean(tokens) / med['full']:.0f} tokens/s)")
    print(f"MLM-only step:            {med['mlm']:.2f} s")
    print(f"bare encoder fwd+bwd:     {med['bare']:.2f} s")
    print(f"ratio full / MLM-only: {med['full'] / med['mlm']:.2f}x; full / bare: {med['full'] / med['bare']:.2f}x")
    print(f"data preparation: {med['data']:.3f} s per batch = {med['data'] / (med['full'] + med['data']):.1%} "
          f"of a full step")


if __name__ == "__main__":
    main()
