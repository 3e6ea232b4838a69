import pytest
import torch
import torch.nn.functional as F

from cvzoo.losses import batch_hard_triplet_loss, contrastive_loss, supervised_contrastive_loss, triplet_loss
from cvzoo.ops import ShapeError


def test_contrastive_hand_made():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])  # distances 5, 0.5, 5
    similar = torch.tensor([1, 0, 0])
    loss = contrastive_loss(a, b, similar, margin=2.0, reduction="none")
    # similar: 0.5 d^2; dissimilar: 0.5 max(0, m - d)^2
    assert loss.tolist() == pytest.approx([12.5, 0.5 * 1.5**2, 0.0])
    assert contrastive_loss(a, b, similar, margin=2.0).item() == pytest.approx((12.5 + 1.125) / 3)


def test_contrastive_gradcheck_and_coincident_points():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, generator=generator)
    similar = torch.tensor([1, 0, 1, 0])
    assert torch.autograd.gradcheck(lambda x: contrastive_loss(x, b, similar, margin=3.0), a)
    same = torch.zeros(2, 3, requires_grad=True)
    contrastive_loss(same, torch.zeros(2, 3), torch.tensor([0, 1])).backward()
    assert torch.isfinite(same.grad).all()
    with pytest.raises(ShapeError, match="similar"):
        contrastive_loss(a, b, similar[:2])


def test_triplet_matches_torch_and_hand_made():
    generator = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(6, 4, generator=generator) for _ in range(3))
    ours = triplet_loss(a, p, n, margin=0.7, reduction="none")
    ref = F.triplet_margin_loss(a, p, n, margin=0.7, reduction="none", eps=0.0)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    anchor = torch.tensor([[0.0, 0.0]])
    loss = triplet_loss(anchor, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.5]]), margin=1.0)
    assert loss.item() == pytest.approx(1.0 - 1.5 + 1.0)
    with pytest.raises(ShapeError, match=r"\[N, D\]"):
        triplet_loss(anchor[0], anchor[0], anchor[0])


def test_batch_hard_mining_hand_made():
    # 1-D embeddings: labels 0 at 0 and 1, label 1 at 1.5 and 4, label 2 alone at 10
    embeddings = torch.tensor([[0.0], [1.0], [1.5], [4.0], [10.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    loss = batch_hard_triplet_loss(embeddings, labels, margin=1.0, reduction="none")
    # anchor 0: hardest pos 1, hardest neg 1.5 -> 0.5; anchor 1: 1 - 0.5 + 1 = 1.5
    # anchor 2: pos 2.5, neg 0.5 -> 3.0; anchor 3: pos 2.5, neg 3 -> 0.5; anchor 4 has no positive
    assert loss.tolist() == pytest.approx([0.5, 1.5, 3.0, 0.5, 0.0], abs=1e-6)
    mean = batch_hard_triplet_loss(embeddings, labels, margin=1.0)
    assert mean.item() == pytest.approx(5.5 / 4, abs=1e-6)  # averaged over the 4 valid anchors
    emb = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), margin=5.0), emb
    )
    with pytest.raises(ShapeError, match="labels"):
        batch_hard_triplet_loss(embeddings, labels[:3])


def _supcon_reference(z, labels, temperature):
    # Straight from Khosla et al. (2020), eq. 2, one anchor and one positive at a time.
    z = F.normalize(z, dim=-1)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            losses.append(torch.zeros((), dtype=z.dtype))
            continue
        denominator = torch.stack([z[i] @ z[a] / temperature for a in others]).logsumexp(0)
        losses.append(-sum(z[i] @ z[p] / temperature - denominator for p in positives) / len(positives))
    return torch.stack(losses)


def test_supervised_contrastive_matches_the_paper_formula():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(7, 5, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # anchors 3 and 6 have no positive
    ours = supervised_contrastive_loss(z, labels, temperature=0.3, reduction="none")
    ref = _supcon_reference(z, labels, 0.3)
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-5, atol=1e-6)
    assert ours[3] == 0 and ours[6] == 0
    mean = supervised_contrastive_loss(z, labels, temperature=0.3)
    assert mean.item() == pytest.approx(ref.sum().item() / 5, rel=1e-5)  # 5 anchors with a positive
    # Scale-free: the embeddings are normalised inside.
    torch.testing.assert_close(supervised_contrastive_loss(3 * z, labels, 0.3), mean)
    # Two well separated clusters cost nearly nothing; swapping the labels costs a lot.
    clusters = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    good = supervised_contrastive_loss(clusters, torch.tensor([0, 0, 1, 1]), temperature=0.1)
    bad = supervised_contrastive_loss(clusters, torch.tensor([0, 1, 0, 1]), temperature=0.1)
    assert good.item() < 1e-6 and bad.item() > 10


def test_supervised_contrastive_gradients_and_errors():
    emb = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda x: supervised_contrastive_loss(x, labels, 0.5).double(), emb)
    single = torch.randn(4, 3, requires_grad=True)
    loss = supervised_contrastive_loss(single, torch.arange(4))  # no positives anywhere: 0, finite grad
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(single.grad).all()
    with pytest.raises(ShapeError, match="labels"):
        supervised_contrastive_loss(emb, labels[:3])
    with pytest.raises(ValueError, match="temperature"):
        supervised_contrastive_loss(emb, labels, temperature=0)


def test_batch_hard_collapse_point_is_the_margin_not_a_bug():
    # Why batch-hard triplet training can stall at loss == margin (FaceNet, section 3.2): at a random
    # initialisation the hardest positive of every anchor is farther than its hardest negative, so
    # shrinking all distances towards 0 lowers the loss towards the margin. The loss is right; the
    # collapsed embedding is a bad local minimum of the method.
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    spread = torch.randn(32, 16, generator=generator)
    for scale in (1.0, 0.1, 1e-3):
        loss = batch_hard_triplet_loss(scale * spread, labels, margin=0.3)
        assert loss.item() > 0.3
    assert batch_hard_triplet_loss(1e-3 * spread, labels, margin=0.3).item() == pytest.approx(0.3, abs=0.01)
