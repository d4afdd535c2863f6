"""The exercise checkers accept the right answers and say what is wrong with the typical wrong ones."""
import torch
import torch.nn.functional as F

from ae_course.exercises import Feedback, check_bernoulli_nll, check_mean_image_baseline, check_pca_error


def test_feedback_truthiness_and_text():
    assert Feedback(True, "ok") and not Feedback(False, "no")
    assert str(Feedback(False, "no")).startswith("Not yet")


def test_bernoulli_checker():
    stable = lambda x, l: (F.softplus(l) - x * l).sum(1)
    assert check_bernoulli_nll(stable)
    cases = {
        "underflows": lambda x, l: -(x * torch.log(torch.sigmoid(l)) + (1 - x) * torch.log(1 - torch.sigmoid(l))).sum(1),
        "one value per pixel": lambda x, l: F.softplus(l) - x * l,
        "single number": lambda x, l: (F.softplus(l) - x * l).sum(),
        "sign is flipped": lambda x, l: -(F.softplus(l) - x * l).sum(1),
        "averaged over pixels": lambda x, l: (F.softplus(l) - x * l).mean(1),
        "raised ZeroDivisionError": lambda x, l: 1 / 0,
        "return a torch.Tensor": lambda x, l: 3.0,
        "differ": lambda x, l: (F.softplus(l) - x * l).sum(1) + 1,
    }
    for needle, fn in cases.items():
        feedback = check_bernoulli_nll(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(300, 784, generator=g) ** 3, torch.rand(100, 784, generator=g) ** 3


def test_baseline_checker():
    x_train, x_test = _data()
    right = ((x_test - x_train.mean(0)) ** 2).sum(1).mean()
    assert check_mean_image_baseline(right, x_train, x_test)
    assert "averaged over pixels" in check_mean_image_baseline(right / 784, x_train, x_test).message
    test_mean = ((x_test - x_test.mean(0)) ** 2).sum(1).mean()
    assert "test" in check_mean_image_baseline(test_mean, x_train, x_test).message
    assert "number" in check_mean_image_baseline(None, x_train, x_test).message
    assert "finite" in check_mean_image_baseline(float("nan"), x_train, x_test).message
    assert not check_mean_image_baseline(right * 1.1, x_train, x_test)


def test_pca_checker():
    from sklearn.decomposition import PCA
    x_train, x_test = _data()
    pca = PCA(2).fit(x_train.numpy())
    right = ((x_test.numpy() - pca.inverse_transform(pca.transform(x_test.numpy()))) ** 2).sum(1).mean()
    assert check_pca_error(right, x_train, x_test)
    no_mean = x_test.numpy() - pca.mean_
    forgot = ((x_test.numpy() - no_mean @ pca.components_.T @ pca.components_) ** 2).sum(1).mean()
    assert "mean image back" in check_pca_error(forgot, x_train, x_test).message
    pca_t = PCA(2).fit(x_test.numpy())
    on_test = ((x_test.numpy() - pca_t.inverse_transform(pca_t.transform(x_test.numpy()))) ** 2).sum(1).mean()
    assert "fitted PCA on the test" in check_pca_error(on_test, x_train, x_test).message
