"""Networks for 32x32 images (engine/models/cifar.py): outputs, sizes, pairs."""

from __future__ import annotations

import pytest
import torch

from engine.errors import UserError
from engine.models import available_models, build_model, default_pair, parameter_count
from engine.models.cifar import cifar_resnet, wide_resnet

# parameters with 10 classes and RGB input (RepDistiller's counts for the published pairs)
PARAMETERS = {
    "wrn-40-2": 2_243_546, "wrn-16-2": 691_674,
    "resnet32x4": 7_410_730, "resnet8x4": 1_210_410,
    "resnet56": 855_770, "resnet20": 272_474,
    "cifar-small-teacher": 662_386, "cifar-small-student": 24_346,
}
PAIRS = (("wrn-40-2", "wrn-16-2"), ("resnet32x4", "resnet8x4"), ("resnet56", "resnet20"),
         ("cifar-small-teacher", "cifar-small-student"))
FEATURES = {"wrn-40-2": 128, "wrn-16-2": 128, "resnet32x4": 256, "resnet8x4": 256, "resnet56": 64, "resnet20": 64,
            "cifar-small-teacher": 192, "cifar-small-student": 64}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_model_returns_logits_and_features_and_has_its_size(name):
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 10, "image")
    assert parameter_count(model) == PARAMETERS[name]
    model.eval()
    logits, features = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and features.shape == (2, FEATURES[name])
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("teacher,student", PAIRS)
def test_teachers_are_larger_than_their_students(teacher, student):
    assert PARAMETERS[teacher] > 3 * PARAMETERS[student]


@pytest.mark.parametrize("name", ["cifar-small-teacher", "cifar-small-student", "wrn-16-2", "resnet20"])
def test_grayscale_28px_input_and_other_class_counts_work(name):
    model = build_model(name, (1, 28, 28), 7, "image").eval()
    logits, _ = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 7)


def test_small_student_learns_a_batch_and_channels_last_changes_nothing():
    torch.manual_seed(0)
    model = build_model("cifar-small-student", (3, 32, 32), 4, "image")
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x)[0], y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    plain = build_model("cifar-small-student", (3, 32, 32), 4, "image").eval()
    plain.load_state_dict(model.state_dict())
    plain.channels_last = False
    assert torch.allclose(plain(x)[0], model(x)[0], atol=1e-4)


def test_default_pair_on_cpu_is_the_small_pair_and_all_are_registered():
    if torch.cuda.is_available():
        assert default_pair("image", (3, 32, 32)) == ("wrn-40-2", "wrn-16-2")
    else:
        assert default_pair("image", (3, 32, 32)) == ("cifar-small-teacher", "cifar-small-student")
    assert default_pair("image", (1, 8, 8)) == ("digits-cnn-large", "digits-cnn-small")
    assert set(PARAMETERS) <= set(available_models("image"))
    with pytest.raises(UserError, match="is for image data"):
        build_model("wrn-16-2", (2,), 2, "points")


def test_depths_that_do_not_fit_the_block_structure_are_refused():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(15, 2, 3, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(9, (16, 16, 32, 64), 3, 10)
