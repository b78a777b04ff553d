"""Entity-level precision, recall and F1: seqeval in its default, conlleval-compatible mode.

In that mode an ``I-X`` that follows ``O`` or another type starts a new entity (IOB1
tolerance), exactly as conlleval counts chunks.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from clism.errors import InputError


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(predicted):
        raise InputError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise InputError(f"sentence {i + 1}: {len(g)} gold tags but {len(p)} predicted")
    gold_entities = {(i, *e) for i, tags in enumerate(gold) for e in get_entities(list(tags))}
    pred_entities = {(i, *e) for i, tags in enumerate(predicted) for e in get_entities(list(tags))}
    gold, predicted = [list(t) for t in gold], [list(t) for t in predicted]
    return {
        "precision": 100.0 * float(precision_score(gold, predicted, zero_division=0)),
        "recall": 100.0 * float(recall_score(gold, predicted, zero_division=0)),
        "f1": 100.0 * float(f1_score(gold, predicted, zero_division=0)),
        "gold_entities": len(gold_entities),
        "predicted_entities": len(pred_entities),
        "correct_entities": len(gold_entities & pred_entities),
        "gold_by_type": dict(sorted(Counter(e[1] for e in gold_entities).items())),
    }
