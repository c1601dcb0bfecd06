"""engine.inference.evaluating: eval mode inside, the caller's mode after, a served net untouched."""

import torch

from emberd.engine.inference import evaluating


class Counting(torch.nn.Sequential):
    walks = 0

    def train(self, mode: bool = True):
        Counting.walks += 1
        return super().train(mode)


def test_a_training_net_evaluates_inside_and_trains_after():
    net = Counting(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    with evaluating(net):
        assert not any(m.training for m in net.modules())
    assert all(m.training for m in net.modules())


def test_a_net_already_in_eval_mode_is_not_walked_and_a_stray_training_child_is_caught():
    net = Counting(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).eval()
    Counting.walks = 0
    with evaluating(net):
        pass
    assert Counting.walks == 0 and not net.training
    net[1].train()  # one submodule left in training mode: dropout would be on
    with evaluating(net):
        assert not net[1].training
