"""QA evaluation speed: clism's batched predictor vs the transformers question-answering pipeline.

Same fine-tuned model (a linear-head clism checkpoint, which maps one to one onto
``AutoModelForQuestionAnswering``), same questions, same window settings, measured side
by side in one run. Prints questions/s of each, the speed ratio and both F1 scores; clism
is timed at each ``--dtypes`` precision (``--inference-dtype``: bf16 autocast needs a CPU
with AVX512-BF16 or AMX to be fast).

    python bench/qa_eval.py --model runs/qa-k256-linear/seed-1/model --lang ar --questions 200

transformers 5 removed the question-answering pipeline. Run this bench where
transformers 4.x is installed, e.g. a virtual environment that sees the rest:

    python -m venv --system-site-packages /tmp/tf4 && /tmp/tf4/bin/pip install "transformers>=4.46,<5"
    /tmp/tf4/bin/python bench/qa_eval.py --model ...
"""
from __future__ import annotations

import argparse
import time

import torch


def load_tokenizer(checkpoint: str):
    """AutoTokenizer, or (transformers 4 reading a transformers 5 tokenizer_config) the fast
    tokenizer straight from tokenizer.json with the special tokens of its config."""
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(checkpoint)
    except (ValueError, AttributeError, KeyError):
        config = json.load(open(f"{checkpoint}/tokenizer_config.json"))
        specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        return PreTrainedTokenizerFast(tokenizer_file=f"{checkpoint}/tokenizer.json", **specials)


def clism_model(checkpoint: str):
    from safetensors.torch import load_file
    from transformers import AutoModel

    from clism.models.span_model import HEAD_FILE, SpanExtractionModel

    model = SpanExtractionModel(AutoModel.from_pretrained(checkpoint, add_pooling_layer=False), "linear")
    model.head.load_state_dict(load_file(f"{checkpoint}/{HEAD_FILE}"))
    return model.eval()


def pipeline_model(checkpoint: str):
    """Our linear head is a (hidden -> 2) layer, exactly ``qa_outputs`` of the HF QA models."""
    from safetensors.torch import load_file
    from transformers import AutoModelForQuestionAnswering

    from clism.models.span_model import HEAD_FILE

    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint)
    head = load_file(f"{checkpoint}/{HEAD_FILE}")
    with torch.no_grad():
        model.qa_outputs.weight.copy_(head["weight"])
        model.qa_outputs.bias.copy_(head["bias"])
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a clism QA checkpoint with the linear head")
    parser.add_argument("--dataset", default="xquad")
    parser.add_argument("--lang", default="ar")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=0, help="clism's (0: its default for the device)")
    parser.add_argument("--pipeline-batch-sizes", default="1,8,32", help="the pipeline's best of these is used")
    parser.add_argument("--dtypes", default="fp32,bf16", help="clism's inference precisions to time")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    from transformers import pipeline

    from clism.evaluation.qa_metrics import QAMetric, score_predictions
    from clism.models.backbone import inference_dtype
    from clism.tasks.qa.postprocess import predict
    from clism.tasks.qa.run import evaluation_sets

    (eval_set,) = evaluation_sets([args.dataset], [args.lang], "", False, args.data_dir, args.questions)
    examples, metric = eval_set.examples, QAMetric("squad", args.lang)
    torch.set_num_threads(torch.get_num_threads())

    model, tokenizer = clism_model(args.model), load_tokenizer(args.model)
    hf_model = pipeline_model(args.model)
    qa = pipeline("question-answering", model=hf_model, tokenizer=tokenizer, device=-1)

    # one warm-up call each, so neither pays first-call costs in the timing
    predict(model, tokenizer, examples[:4], batch_size=args.batch_size)
    qa(question=examples[0].question, context=examples[0].context)

    ours_by_dtype = {}
    for dtype in args.dtypes.split(","):
        with inference_dtype(dtype):
            predict(model, tokenizer, examples[:4], batch_size=args.batch_size)  # its own warm-up
            started = time.perf_counter()
            answers, _ = predict(model, tokenizer, examples, batch_size=args.batch_size)
            ours_by_dtype[dtype] = (answers, time.perf_counter() - started)

    theirs_s, theirs, best_bs = float("inf"), {}, 0
    for bs in map(int, args.pipeline_batch_sizes.split(",")):
        started = time.perf_counter()
        outputs = qa(question=[e.question for e in examples], context=[e.context for e in examples],
                     max_seq_len=384, doc_stride=128, max_answer_len=30, batch_size=bs)
        seconds = time.perf_counter() - started
        print(f"  pipeline batch {bs}: {len(examples) / seconds:.2f} questions/s")
        if seconds < theirs_s:
            theirs_s, best_bs = seconds, bs
            theirs = {e.id: o["answer"] for e, o in zip(examples, outputs if isinstance(outputs, list) else [outputs])}

    theirs_f1 = score_predictions(metric, eval_set.gold, theirs)["f1"]
    n = len(examples)
    import transformers

    print(f"{args.dataset}.{args.lang}, {n} questions, model {args.model}, {torch.get_num_threads()} threads, "
          f"transformers {transformers.__version__}")
    print(f"transformers pipeline: {n / theirs_s:7.2f} questions/s  ({theirs_s:.1f} s)  F1 {theirs_f1:.2f}"
          f"  (its best batch size, {best_bs})")
    for dtype, (ours, ours_s) in ours_by_dtype.items():
        ours_f1 = score_predictions(metric, eval_set.gold, ours)["f1"]
        agree = sum(ours[k].strip() == theirs[k].strip() for k in ours) / len(ours)
        print(f"clism predict, {dtype}:   {n / ours_s:7.2f} questions/s  ({ours_s:.1f} s)  F1 {ours_f1:.2f}  "
              f"speed ratio (clism / pipeline) {theirs_s / ours_s:.2f}x; answers identical to the pipeline's "
              f"{agree:.1%}")


if __name__ == "__main__":
    main()
