"""NER prediction speed: clism's tagger vs the transformers token-classification pipeline.

The same fine-tuned checkpoint (clism saves NER models as the encoder's own
``*ForTokenClassification``), the same test sentences, measured side by side in one run.
clism tags pre-split words in length-sorted batches (at each ``--dtypes`` precision); the
pipeline gets each sentence as text with its words joined by spaces and groups sub-words
into words (``aggregation_strategy="first"``, the first sub-word's label, as clism). Prints
sentences/s, the ratio and entity F1 (seqeval, strict IOB2) of each against the gold tags.

    python bench/ner_predict.py --model runs/ner-small/seed-1/model --lang de --sentences 1000
"""
from __future__ import annotations

import argparse
import time


def pipeline_tags(outputs: list[list[dict]], sentences) -> list[list[str]]:
    """Entity groups (character offsets into the joined words) as one IOB2 tag per word."""
    tags = []
    for groups, sentence in zip(outputs, sentences):
        starts, position = [], 0
        for word in sentence.words:
            starts.append(position)
            position += len(word) + 1
        row = ["O"] * len(sentence.words)
        for group in groups:
            inside = [i for i, s in enumerate(starts) if group["start"] <= s < group["end"]]
            for n, i in enumerate(inside):
                row[i] = ("B-" if n == 0 else "I-") + group["entity_group"]
        tags.append(row)
    return tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a clism NER checkpoint (the model/ of a seed)")
    parser.add_argument("--dataset", default="wikiann")
    parser.add_argument("--lang", default="de")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64, help="clism's")
    parser.add_argument("--dtypes", default="fp32,bf16", help="clism's inference precisions to time")
    parser.add_argument("--pipeline-batch-sizes", default="1,8,32", help="the pipeline's best of these is used")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from clism.evaluation.ner_metrics import entity_scores
    from clism.models.backbone import inference_dtype
    from clism.tasks.ner.run import load_token_classifier, ner_evaluation_sets, predict_tags

    (eval_set,) = ner_evaluation_sets([args.dataset], [args.lang], "test", args.data_dir, args.sentences)
    sentences = eval_set.sentences
    gold = [s.tags for s in sentences]
    model, tokenizer = load_token_classifier(args.model)
    tagger = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(args.model),
                      tokenizer=AutoTokenizer.from_pretrained(args.model), aggregation_strategy="first", device=-1)
    texts = [" ".join(s.words) for s in sentences]
    predict_tags(model, tokenizer, sentences[:8], 128, args.batch_size)  # warm-ups
    tagger(texts[:2])

    ours = {}
    for dtype in args.dtypes.split(","):
        with inference_dtype(dtype):
            started = time.perf_counter()
            tags, _ = predict_tags(model, tokenizer, sentences, 128, args.batch_size)
            ours[dtype] = (tags, time.perf_counter() - started)
    theirs_s, theirs, best_bs = float("inf"), [], 0
    for bs in map(int, args.pipeline_batch_sizes.split(",")):
        started = time.perf_counter()
        outputs = tagger(texts, batch_size=bs)
        seconds = time.perf_counter() - started
        print(f"  pipeline batch {bs}: {len(texts) / seconds:.1f} sentences/s")
        if seconds < theirs_s:
            theirs_s, theirs, best_bs = seconds, pipeline_tags(outputs, sentences), bs

    import transformers

    n = len(sentences)
    print(f"{args.dataset}.{args.lang}, {n} sentences, model {args.model}, {torch.get_num_threads()} threads, "
          f"transformers {transformers.__version__}")
    print(f"transformers pipeline: {n / theirs_s:7.1f} sentences/s  ({theirs_s:.1f} s)  "
          f"F1 {entity_scores(gold, theirs)['f1']:.2f}  (its best batch size, {best_bs})")
    for dtype, (tags, seconds) in ours.items():
        same = sum(a == b for a, b in zip(tags, theirs)) / n
        print(f"clism tagger, {dtype}:    {n / seconds:7.1f} sentences/s  ({seconds:.1f} s)  "
              f"F1 {entity_scores(gold, tags)['f1']:.2f}  speed ratio (clism / pipeline) {theirs_s / seconds:.2f}x; "
              f"sentences tagged as the pipeline tags them {same:.1%}")


if __name__ == "__main__":
    main()
