"""MNIST reflow: the pairs are the teacher's own (noise, digit) couples, and the student learns them."""
import torch

from flowlab import pretrained
from flowlab.mnist.reflow import TEACHER, reflow_objective, teacher_pairs
from flowlab.mnist.sampling import sample_digits
from flowlab.train import fit


def test_pairs_are_the_teachers_ode_images_of_their_noise():
    pairs = teacher_pairs(torch.Generator().manual_seed(3), n=10)
    teacher = pretrained.load(TEACHER["checkpoint"])
    again = sample_digits(teacher, pairs.y, TEACHER["w"], steps=TEACHER["steps"], method=TEACHER["method"],
                          noise=pairs.z)
    torch.testing.assert_close(pairs.x1, again)
    shuffled = sample_digits(teacher, pairs.y, TEACHER["w"], steps=TEACHER["steps"], method=TEACHER["method"],
                             noise=pairs.z.roll(1, dims=0))
    assert (shuffled - pairs.x1).abs().mean() > 0.1          # another noise gives another digit
    assert pairs.y.tolist() == list(range(10)) and len(pairs) == 10


def test_a_few_student_steps_lower_the_reflow_loss():
    pairs = teacher_pairs(torch.Generator().manual_seed(4), n=10)
    student = pretrained.load(TEACHER["checkpoint"])
    fixed = lambda: reflow_objective(student, pairs, 10, torch.Generator().manual_seed(0), "cpu")  # noqa: E731
    with torch.no_grad():
        before = fixed().item()
    fit(student, lambda g: reflow_objective(student, pairs, 10, g, "cpu"), 15, lr=5e-4, progress=False)
    with torch.no_grad():
        after = fixed().item()
    assert after < before, (before, after)
