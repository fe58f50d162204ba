import pytest
import torch
from torch import nn

from must.model import MusTConfig
from must.model.modeling import MusicEncoder
from must.model.pair_max import PairMax, pair_max


def test_pair_max_by_hand():
    x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0], [2.0, 2.0], [0.0, 7.0], [9.0, 9.0]]]], requires_grad=True)  # 5 rows
    y = pair_max(x)
    assert y.tolist() == [[[[3.0, 5.0], [2.0, 7.0]]]]  # the odd fifth row is dropped
    y.backward(torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]]))
    # each gradient goes to the row that won; on the tie (2, 2) to the first row, as max_pool2d sends it
    assert x.grad.tolist() == [[[[0.0, 20.0], [10.0, 0.0], [30.0, 0.0], [0.0, 40.0], [0.0, 0.0]]]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 3, 8, 5), (1, 4, 7, 3)])
def test_pair_max_equals_max_pool2d_in_values_and_gradients_with_ties(dtype, shape):
    torch.manual_seed(0)
    x = (torch.randn(*shape) * 2).round().to(dtype)  # integers: many ties within pairs
    ref_in, in_ = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, out = nn.functional.max_pool2d(ref_in, (2, 1)), pair_max(in_)
    grad = torch.randn(ref.shape).to(dtype)
    ref.backward(grad)
    out.backward(grad)
    assert out.dtype == dtype and torch.equal(out, ref)
    assert torch.equal(in_.grad, ref_in.grad)
    with torch.no_grad():
        assert torch.equal(pair_max(x), ref)


def test_pair_max_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\), got shape \(3, 4\)"):
        pair_max(torch.zeros(3, 4))


def test_encoder_with_pair_max_trains_as_with_max_pool2d_and_keeps_its_weights_names():
    torch.manual_seed(0)
    cfg = MusTConfig(encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_channels=4)
    enc = MusicEncoder(cfg)
    old = MusicEncoder(cfg)
    old.conv = nn.Sequential(*[nn.MaxPool2d((2, 1)) if isinstance(m, PairMax) else m for m in old.conv])
    old.load_state_dict(enc.state_dict())  # the same keys: the pooling has no weights
    assert list(old.state_dict()) == list(enc.state_dict())
    enc.eval(), old.eval()  # no dropout: the two runs draw nothing
    mel, offset = torch.rand(2, cfg.n_mels, 100), torch.tensor([0.0, 3.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (a, la), (b, lb) = enc(mel, offset), old(mel, offset)
    assert torch.equal(a, b) and torch.equal(la, lb)
    (la.float().square().mean() + a.float().mean()).backward()
    (lb.float().square().mean() + b.float().mean()).backward()
    for (name, p), q in zip(enc.named_parameters(), old.parameters()):
        assert torch.equal(p.grad, q.grad), name
