"""The checkers of the VQ-VAE chapter accept the right answers and name each typical mistake."""
import math

import pytest
import torch

from ae_course.exercises.vq_checks import check_perplexity, check_vector_quantizer


def make_quantize(*, nearest="argmin", layout="permute", st="full", cb_detach="z_e", cm_detach="z_q",
                  reduce="sum", beta=1.0, z_q_is="codes", codes_flat=False, loss_shape="per_image",
                  z_q_layout="bdhw", swap=False):
    """A quantize(z_e, codebook) with one deliberate deviation from the right answer (the defaults)."""
    def quantize(z_e, codebook):
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d) if layout == "permute" else z_e.reshape(-1, d)
        if nearest == "argmin":
            codes = torch.cdist(flat, codebook).argmin(1)
        elif nearest == "argmax":
            codes = torch.cdist(flat, codebook).argmax(1)
        else:                                                            # the largest inner product
            codes = (flat @ codebook.T).argmax(1)
        z_q = codebook[codes].reshape(b, h, w, d)
        if z_q_layout == "bdhw":
            z_q = z_q.permute(0, 3, 1, 2)

        def sg(t, yes):
            return t.detach() if yes else t

        def total(t):
            if loss_shape == "per_element":
                return t
            if loss_shape == "scalar":
                return t.sum()
            return t.flatten(1).sum(1) if reduce == "sum" else t.flatten(1).mean(1)

        zq4 = z_q if z_q_layout == "bdhw" else z_q.permute(0, 3, 1, 2)
        cb = total((sg(z_e, "z_e" in cb_detach) - sg(zq4, "z_q" in cb_detach)) ** 2)
        cm = beta * total((sg(z_e, "z_e" in cm_detach) - sg(zq4, "z_q" in cm_detach)) ** 2)
        if swap:
            cb, cm = cm, cb
        if z_q_is == "z_e":
            out = z_e
        elif st == "full":
            out = z_e + (z_q - z_e).detach() if z_q_layout == "bdhw" else z_q
        elif st == "half":
            out = z_e + z_q - z_e.detach()
        elif st == "scaled":
            out = 2 * z_e + (z_q - 2 * z_e).detach()
        else:
            out = z_q
        return out, (codes if codes_flat else codes.reshape(b, h, w)), cb, cm
    return quantize


def expanded_quantize(z_e, codebook):
    """A right answer written differently: squared distances by expansion, gather via F.embedding."""
    b, d, h, w = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
    dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)
    codes = dist.argmin(1)
    z_q = torch.nn.functional.embedding(codes, codebook).reshape(b, h, w, d).permute(0, 3, 1, 2)
    st = z_e + (z_q - z_e).detach()
    return (st, codes.reshape(b, h, w), ((z_e.detach() - z_q) ** 2).sum((1, 2, 3)),
            ((z_e - z_q.detach()) ** 2).sum((1, 2, 3)))


def test_accepts_right_answers():
    assert check_vector_quantizer(make_quantize())
    assert check_vector_quantizer(expanded_quantize)


@pytest.mark.parametrize("needle, options", [
    ("FARTHEST codes", dict(nearest="argmax")),
    ("inner product", dict(nearest="dot")),
    ("without moving the channel axis last", dict(layout="reshape")),
    ("does not reach z_e", dict(st="none")),
    ("reaches the codebook through z_q", dict(st="half")),
    ("unchanged", dict(st="scaled")),
    ("z_q equals z_e", dict(z_q_is="z_e")),
    ("codebook loss has no stop-gradient", dict(cb_detach="")),
    ("commitment loss has no stop-gradient", dict(cm_detach="")),
    ("stop-gradient of the codebook loss is on the wrong side", dict(cb_detach="z_q", cm_detach="z_e")),
    ("stop-gradient of the codebook loss is on the wrong side", dict(swap=True)),
    ("moves nothing", dict(cb_detach="z_e z_q")),
    ("averaged over the D coordinates", dict(reduce="mean")),
    ("multiplied by beta", dict(beta=0.25)),
    ("reshape it to (B, H, W)", dict(codes_flat=True)),
    ("single number for the whole batch", dict(loss_shape="scalar")),
    ("one value per coordinate and position", dict(loss_shape="per_element")),
    ("(B, H, W, D)", dict(z_q_layout="bhwd")),
])
def test_names_each_mistake(needle, options):
    feedback = check_vector_quantizer(make_quantize(**options))
    assert not feedback and needle in feedback.message, (needle, feedback.message)


def test_names_the_chapters_first_attempt_and_broken_code():
    def first_attempt(z_e, codebook):                            # as on the page
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
        codes = torch.cdist(flat, codebook).argmax(dim=1)
        z_q = codebook[codes].reshape(z_e.shape[0], z_e.shape[2], z_e.shape[3], -1).permute(0, 3, 1, 2)
        term = ((z_e - z_q) ** 2).flatten(1).sum(1)
        return z_q, codes.reshape(z_e.shape[0], z_e.shape[2], z_e.shape[3]), term, term

    assert "FARTHEST" in check_vector_quantizer(first_attempt).message
    assert "raised ZeroDivisionError" in check_vector_quantizer(lambda z, e: 1 / 0).message
    assert "returned None" in check_vector_quantizer(lambda z, e: None).message
    assert "four tensors" in check_vector_quantizer(lambda z, e: (z, z)).message


def test_perplexity_checker():
    codes = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 3]])
    f = torch.tensor([5, 1, 1, 1]) / 8
    entropy = -(f * f.log()).sum().item()
    assert check_perplexity(math.exp(entropy), codes, 6)
    assert check_perplexity(torch.tensor(math.exp(entropy)), codes, 6)
    cases = {
        "entropy H(f) in nats": entropy,
        "entropy in bits": entropy / math.log(2),
        "exponentiated the entropy in bits": math.exp(entropy / math.log(2)),
        "used at least once": 4,
        "size of the codebook": 6,
        "each image's grid": (math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
                              + math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))) / 2,
        "expected exp": 3.3,
    }
    for needle, value in cases.items():
        feedback = check_perplexity(value, codes, 6)
        assert not feedback and needle in feedback.message, (needle, feedback.message)
    assert "is None" in check_perplexity(None, codes, 6).message
