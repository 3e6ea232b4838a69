"""The gan task with pytorch-fid's Inception weights as ``gan.features``: FID / KID in pool3 features,
no classification accuracy score. The weights are random (the file's layout is what the task reads);
their parity with pytorch-fid is tests/models/test_inception_fid.py's. Two images: FID's 2048 x 2048
eigendecompositions cost what they cost at any sample size."""

import torch

from cvzoo.api import build_config
from cvzoo.models.classification.inception_fid import FID_FEATURES, FIDInceptionV3
from cvzoo.tasks import build_task


def test_validation_reports_fid_in_inception_features(tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    model = FIDInceptionV3()
    for module in model.modules():  # He init: features of a usable size through the 20-odd layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(model.state_dict(), weights)
    config = build_config(overrides=["task=gan", "model.name=cdcgan_28", "data.source=fashion_mnist_sample",
                                     "model.kwargs={width: 8, latent_dim: 16}", f"gan.features={weights}"])
    task = build_task(config)
    _, val = task.build_datasets()
    gan = task.build_model().eval()
    assert "Inception-v3 pool3 features (pytorch-fid's weights): the standard FID" in capsys.readouterr().out
    evaluator = task.build_evaluator()
    task.validation_step(gan, task.collate([val[i] for i in range(2)]), evaluator)
    assert evaluator.real[0].shape == (2, FID_FEATURES)
    metrics = evaluator.compute()
    assert metrics["fid"] > 0 and metrics["kid"] == metrics["kid"]  # KID is a number (not NaN)
    assert "cas" not in metrics  # a conditional GAN, but Inception's classes are not the data's
