"""Classification metrics against scikit-learn, the notes' four-sample example, the evaluator, plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm

from cvzoo.metrics.classification import (
    ClassificationEvaluator,
    average_precision,
    binary_pr_curve,
    binary_roc_auc,
    confusion_matrix,
    pr_curves,
    precision_recall_f1,
    roc_auc_ovr,
    topk_accuracy,
)
from cvzoo.metrics.plots_classification import plot_confusion_matrix, plot_pr_curves


def _case(seed: int, n: int = 200, k: int = 7, ties: bool = False):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[targets]  # better than chance
    if ties:
        logits = np.round(logits, 1)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return logits, probs, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prf_and_confusion_match_sklearn(seed):
    k = 7
    logits, _, targets = _case(seed, k=k)
    preds = logits.argmax(1)
    preds[preds == 6] = 5  # class 6 never predicted: exercises the 0/0 precision rule
    cm = confusion_matrix(preds, targets, k)
    assert np.array_equal(cm, skm.confusion_matrix(targets, preds, labels=range(k)))
    ours = precision_recall_f1(cm)
    p, r, f, s = skm.precision_recall_fscore_support(targets, preds, labels=range(k), zero_division=0)
    np.testing.assert_allclose(ours["precision"], p, atol=1e-12)
    np.testing.assert_allclose(ours["recall"], r, atol=1e-12)
    np.testing.assert_allclose(ours["f1"], f, atol=1e-12)
    assert np.array_equal(ours["support"], s)
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            targets, preds, labels=range(k), average=avg, zero_division=0
        )
        assert ours[f"{avg}_precision"] == pytest.approx(p, abs=1e-12)
        assert ours[f"{avg}_recall"] == pytest.approx(r, abs=1e-12)
        assert ours[f"{avg}_f1"] == pytest.approx(f, abs=1e-12)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(targets, preds), abs=1e-12)


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_auc_topk_and_pr_curves_match_sklearn(seed, ties):
    k = 7
    logits, probs, targets = _case(seed, k=k, ties=ties)
    per_class, macro = roc_auc_ovr(probs, targets)
    ref = [skm.roc_auc_score(targets == c, probs[:, c]) for c in range(k)]
    np.testing.assert_allclose(per_class, ref, atol=1e-12)
    assert macro == pytest.approx(skm.roc_auc_score(targets, probs, multi_class="ovr"), abs=1e-12)
    if not ties:  # top-k order is ambiguous under ties
        got = topk_accuracy(torch.from_numpy(logits), torch.from_numpy(targets), ks=(1, 3, 5))
        for kk in (1, 3, 5):
            assert got[kk] == pytest.approx(skm.top_k_accuracy_score(targets, logits, k=kk, labels=range(k)), abs=1e-12)
    for c, (precision, recall, thresholds) in enumerate(pr_curves(probs, targets)):
        rp, rr, rt = skm.precision_recall_curve(targets == c, probs[:, c])
        np.testing.assert_allclose(precision, rp, atol=1e-12)
        np.testing.assert_allclose(recall, rr, atol=1e-12)
        np.testing.assert_allclose(thresholds, rt, atol=1e-12)
        assert average_precision(precision, recall) == pytest.approx(
            skm.average_precision_score(targets == c, probs[:, c]), abs=1e-12
        )


def test_notes_four_sample_example():
    # TP=2, FP=1, FN=0, TN=1 for the positive class 1: P = 2/3, R = 1, Acc = 3/4, F1 = 0.8.
    targets = torch.tensor([1, 1, 0, 0])
    logits = torch.tensor([[0.1, 0.9], [0.3, 0.7], [0.4, 0.6], [0.8, 0.2]])
    ev = ClassificationEvaluator(2, ["negative", "positive"])
    ev.update(logits, targets)
    out = ev.compute()
    pos = out["per_class"][1]
    assert pos["name"] == "positive" and pos["support"] == 2
    assert round(pos["precision"], 3) == 0.667 and pos["recall"] == 1.0 and pos["f1"] == pytest.approx(0.8)
    assert out["top1"] == 0.75 and "top5" not in out
    assert out["confusion_matrix"].tolist() == [[1, 1], [0, 2]]
    assert out["auc"] == pytest.approx(1.0)  # positives score 0.9, 0.7 above negatives 0.6, 0.2


def test_evaluator_batches_merge_and_state_equal_one_shot():
    k = 7
    logits, probs, targets = _case(3, n=120, k=k)
    logits_t, targets_t = torch.from_numpy(logits).float(), torch.from_numpy(targets)
    whole = ClassificationEvaluator(k)
    whole.update(logits_t, targets_t)
    parts = [ClassificationEvaluator(k) for _ in range(3)]
    for i, ev in enumerate(parts):
        for j in range(i * 40, (i + 1) * 40, 16):
            ev.update(logits_t[j : min(j + 16, (i + 1) * 40)], targets_t[j : min(j + 16, (i + 1) * 40)])
    merged = parts[0].merge(parts[1]).merge(parts[2].state())
    a, b = whole.compute(), merged.compute()
    for key in ("top1", "top5", "precision", "recall", "f1", "weighted_f1"):
        assert a[key] == pytest.approx(b[key], abs=1e-12)
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-9)
    assert np.array_equal(a["confusion_matrix"], b["confusion_matrix"]) and b["num_samples"] == 120
    # and against sklearn directly
    assert a["top1"] == pytest.approx(skm.accuracy_score(targets, logits.argmax(1)))
    assert a["top5"] == pytest.approx(skm.top_k_accuracy_score(targets, logits, k=5, labels=range(k)))
    assert a["f1"] == pytest.approx(skm.f1_score(targets, logits.argmax(1), average="macro"), abs=1e-12)
    assert a["auc"] == pytest.approx(skm.roc_auc_score(targets, probs, multi_class="ovr"), abs=1e-6)
    assert len(whole.pr_curves()) == k


def test_evaluator_errors_and_edge_cases():
    ev = ClassificationEvaluator(3)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        ev.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ev.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="2 predictions but 3 targets"):
        ev.update(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="merge"):
        ev.merge(ClassificationEvaluator(4))
    with pytest.raises(ValueError, match="class names"):
        ClassificationEvaluator(3, ["a"])
    ev.update(torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), torch.tensor([0, 0]))
    out = ev.compute()  # class 0 has no negatives -> AUC undefined (nan), others have no positives
    assert np.isnan(out["auc"]) and out["top1"] == 0.5
    with pytest.raises(ValueError, match="out of range"):
        topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), ks=(5,))


def test_binary_helpers_on_hand_cases():
    assert binary_roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5  # a tie counts one half
    assert np.isnan(binary_roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))  # no negatives
    precision, recall, thresholds = binary_pr_curve(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1]))
    assert precision.tolist() == pytest.approx([2 / 3, 0.5, 1.0, 1.0])
    assert recall.tolist() == [1.0, 0.5, 0.5, 0.0] and thresholds.tolist() == [0.1, 0.8, 0.9]


def test_plots_write_readable_pngs(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    names = ["t-shirt_top", "trouser", "ankle_boot"]
    for normalize in (False, True):
        path = plot_confusion_matrix(cm, names, tmp_path / f"sub/cm_{normalize}.png", normalize=normalize)
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 300
            assert np.unique(np.asarray(img.convert("L"))).size > 10  # not a blank canvas
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion_matrix(np.zeros((2, 2)), names, tmp_path / "x.png")
    _, probs, targets = _case(0, n=50, k=3)
    path = plot_pr_curves(pr_curves(probs, targets), names, tmp_path / "pr.png")
    assert Image.open(path).format == "PNG"
