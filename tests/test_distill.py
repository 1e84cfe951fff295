"""Knowledge distillation (regularizer=[distill]): the loss and its mixing, the teacher's
refusals, and a small student that beats the same student trained alone.

The setting where distillation should help, and does: a teacher CNN trained on the whole
digits train split (1,258 digits); a student MLP with one hidden layer of 32 units that
sees only 100 of them (``dataset.limit=100`` caps every split, so it is tested on 100 test
digits of the same split). Measured (teacher 8 epochs, 98.6%; students 50 epochs, lr 0.01,
T = 4, α = 0.9), on those 100 test digits: seed 0: 91% alone, 96% distilled; seed 1: 94% →
94%; seed 2: 91% → 95%. A hundred digits cannot tell such students apart (one digit is a
point; the binomial standard error at 92% is 2.7 points), so the slow test compares them
on the whole test split (359 digits, none seen in training), digit by digit: over seeds 0-6
the distilled student is right where the one alone is wrong 15/10, 12/11, 15/4, 16/10,
19/5, 22/8 and 14/5 times (accuracy +0.3 to +3.9 points, every seed).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dq
from dq import data
from dq.data_records import Batch, DatasetMeta
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.objectives.base import Objective
from dq.objectives.distill import Distillation, distillation_loss
from dq.rundir.load import _check_same_data, load_run
from dq.runner import prepare_run

SPLIT = ("dataset=digits", "dataset.split_seed=0", "explain.enabled=false")
TEACHER = (*SPLIT, "model=cnn", "dataset.limit=null", "trainer.epochs=8")
STUDENT = (
    *SPLIT,
    "model=mlp",
    "model.hidden=[32]",
    "dataset.limit=100",
    "trainer.epochs=50",
    "optimizer.lr=0.01",
    "trainer.early_stopping.enabled=false",
)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    metrics = dq.train(compose_config(TEACHER), run_dir=run_dir)
    assert metrics["test/accuracy"] > 0.95
    return run_dir


def distill(teacher: Path, *extra: str) -> tuple[str, ...]:
    return ("regularizer=[distill]", f"regularizer.distill.teacher={teacher}", *extra)


class Fixed(nn.Module):
    """A 'model' whose logits are its input (so a test chooses the logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_the_term_is_hintons_soft_target_loss_and_zero_when_the_logits_agree() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 5), 3 * torch.randn(16, 5)
    term = Distillation(weight=0.9, temperature=4.0, teacher_dir="unused")
    term.bind_teacher(Fixed())
    batch = Batch(x=student, y=torch.zeros(16, dtype=torch.long))
    assert float(term(Fixed(), batch, student)) == 0.0  # teacher logits == student logits

    batch = Batch(x=teacher, y=torch.randint(0, 5, (16,)))
    p_teacher = torch.softmax(teacher / 4, dim=1)
    by_hand = 16 * (p_teacher * (p_teacher.log() - torch.log_softmax(student / 4, dim=1))).sum() / 16
    assert float(term(Fixed(), batch, student)) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(distillation_loss(student, teacher, 1.0)) < float(distillation_loss(student, teacher, 4.0))

    out = Objective([term])(Fixed(), Batch(x=student, y=batch.y))  # the clean logits are the student's here
    ce = F.cross_entropy(student, batch.y)
    with torch.no_grad():
        soft = distillation_loss(student, student, 4.0)
    assert float(out.loss) == pytest.approx(float(0.1 * ce + 0.9 * soft), rel=1e-5)
    assert set(out.terms) == {"task", "distill"}


def test_a_term_without_its_teacher_is_a_bug_not_a_silent_zero() -> None:
    term = Distillation(weight=0.5, temperature=2.0, teacher_dir="x")
    with pytest.raises(RuntimeError, match="no teacher"):
        term(Fixed(), Batch(x=torch.zeros(2, 3), y=torch.zeros(2, dtype=torch.long)), torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        (("regularizer.distill.teacher=null",), r"^regularizer.distill.teacher must be a completed dq run directory"),
        (("regularizer.distill.temperature=0",), r"^regularizer.distill.temperature must be > 0, got 0"),
        (("regularizer.distill.weight=1.5",), r"^regularizer.distill.weight must be in \[0, 1\]"),
        (("seed=1", "dataset.split_seed=null"), r"the teacher's train/val/test split \(split seed 0.*set dataset"),
        (("dataset=mnist5k",), r"the teacher's dataset \(digits\) differs from the student's \(mnist5k\)"),
    ],
)
def test_bad_teachers_and_options_are_refused_in_one_line_leaving_nothing(
    make_cfg, teacher_dir: Path, tmp_path: Path, extra: tuple[str, ...], refused: str
) -> None:
    run_dir = tmp_path / "student"
    teacher = () if "regularizer.distill.teacher=null" in extra else (f"regularizer.distill.teacher={teacher_dir}",)
    cfg = make_cfg(*SPLIT, "model=mlp", "regularizer=[distill]", *teacher, *extra)
    with pytest.raises(DQUserError, match=refused) as error:
        dq.train(cfg, run_dir=run_dir)
    assert "\n" not in str(error.value)
    assert not run_dir.exists()


def test_a_teacher_that_is_not_a_completed_run_is_refused(make_cfg, teacher_dir: Path, tmp_path: Path) -> None:
    unfinished = tmp_path / "unfinished"
    shutil.copytree(teacher_dir, unfinished)
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "running"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        unfinished: r"the run has status 'running'; the teacher must be a completed run$",
        empty: r"is not a dq run directory \(no run.json",
        tmp_path / "nowhere": r"no such directory",
    }
    for teacher, refused in cases.items():
        run_dir = tmp_path / "student"
        with pytest.raises(DQUserError, match=rf"^regularizer.distill.teacher={teacher}: .*{refused}"):
            dq.train(make_cfg(*SPLIT, "model=mlp", *distill(teacher)), run_dir=run_dir)
        assert not run_dir.exists()


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"class_names": tuple("abcdefghij")}, r"teacher's classes \(a, b, .*\) differs from the student's \(0, 1,"),
        ({"num_classes": 9}, r"teacher's number of classes \(9\) differs from the student's \(10\)"),
        ({"input_shape": (1, 28, 28)}, r"teacher's input shape \(1, 28, 28\) differs from the student's \(1, 8, 8\)"),
        ({"vocab": ("<pad>", "good")}, r"teacher's vocabulary \(2 tokens\) differs from the student's \(0\)"),
    ],
)
def test_a_teacher_of_other_classes_or_inputs_is_refused(change: dict, refused: str) -> None:
    student = DatasetMeta("digits", "image", (1, 8, 8), 10, tuple(str(d) for d in range(10)))
    with pytest.raises(DQUserError, match=refused):
        _check_same_data(replace(student, **change), student, "regularizer.distill.teacher=t")


def test_the_teacher_is_frozen_in_eval_mode_and_the_students_start_is_unchanged(
    make_cfg, teacher_dir: Path, tmp_path: Path
) -> None:
    plain = prepare_run(make_cfg(*SPLIT, "model=mlp"), tmp_path / "plain")
    built = prepare_run(make_cfg(*SPLIT, "model=mlp", *distill(teacher_dir)), tmp_path / "distilled")
    for run in (plain, built):
        run.loggers.close()
    (term,) = built.objective.terms
    assert isinstance(term, Distillation) and term.teacher is not None
    assert not term.teacher.training and not any(p.requires_grad for p in term.teacher.parameters())
    best = torch.load(teacher_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    for key, value in term.teacher.state_dict().items():
        assert torch.equal(value, best[key]), key
    for a, b in zip(plain.model.parameters(), built.model.parameters(), strict=True):
        assert torch.equal(a, b)  # loading the teacher drew nothing from the student's RNG
    assert built.objective.task_weight == pytest.approx(0.1)


def students(make_cfg, teacher_dir: Path, tmp_path: Path, seed: int) -> tuple[dict, dict]:
    alone = dq.train(make_cfg(*STUDENT, f"seed={seed}"), run_dir=tmp_path / f"alone{seed}")
    run_dir = tmp_path / f"distilled{seed}"
    distilled = dq.train(make_cfg(*STUDENT, f"seed={seed}", *distill(teacher_dir)), run_dir=run_dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 50
    assert all(line["train/distill"] > 0 for line in lines)
    assert lines[-1]["train/distill"] < lines[0]["train/distill"]  # the student moved towards the teacher
    return alone, distilled


def test_a_distilled_student_beats_the_same_student_trained_alone(make_cfg, teacher_dir: Path, tmp_path: Path) -> None:
    alone, distilled = students(make_cfg, teacher_dir, tmp_path, seed=0)
    assert distilled["test/examples"] == alone["test/examples"] == 100
    assert distilled["test/accuracy"] >= alone["test/accuracy"] + 0.03, (alone["test/accuracy"], distilled)


def right_on_the_whole_test_split(run_dir: Path) -> torch.Tensor:
    """Which of the whole digits test split (no ``dataset.limit``: 359 digits, the student's
    100 among them, none in any training set) the run's best model gets right."""
    run = load_run(run_dir)
    test = data.build(replace(run.spec.dataset, limit=None), run.spec.seed).test
    return predict_logits(run.model, test, torch.device("cpu")).argmax(dim=1) == test.y


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: the chance of ``wins`` or more of ``wins + losses``
    discordant pairs going one way if either way were a coin toss."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


@pytest.mark.slow
def test_distilled_students_beat_the_same_students_trained_alone_on_other_seeds(
    make_cfg, teacher_dir: Path, tmp_path: Path
) -> None:
    """Seeds 1-4, paired digit by digit on the whole test split: the digits only the
    distilled student gets right outnumber those only the student alone gets right, beyond
    chance (sign test, p < 0.01; measured 62 to 30, p = 0.0006). Were distillation no help,
    each such digit would go either way as a coin toss and the test would pass once in a
    hundred at most."""
    wins = losses = 0
    for seed in (1, 2, 3, 4):
        students(make_cfg, teacher_dir, tmp_path, seed=seed)
        alone = right_on_the_whole_test_split(tmp_path / f"alone{seed}")
        distilled = right_on_the_whole_test_split(tmp_path / f"distilled{seed}")
        assert len(alone) == 359
        wins += int((distilled & ~alone).sum())
        losses += int((alone & ~distilled).sum())
    assert wins > losses and sign_test_p(wins, losses) < 0.01, (wins, losses)


def test_a_distilled_run_resumed_binds_its_teacher_again_and_equals_one_trained_that_long(
    make_cfg, teacher_dir: Path, tmp_path: Path
) -> None:
    def run(run_dir: Path, epochs: int, resume: bool = False) -> dict:
        cfg = make_cfg(*SPLIT, "model=mlp", *distill(teacher_dir), f"trainer.epochs={epochs}")
        return dq.train(cfg, run_dir=run_dir, resume=resume)

    def lines(run_dir: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]

    whole = run(tmp_path / "whole", 4)
    run(tmp_path / "parts", 2)
    resumed = run(tmp_path / "parts", 4, resume=True)
    assert lines(tmp_path / "parts") == lines(tmp_path / "whole")
    assert len(lines(tmp_path / "whole")) == 4 and resumed["test/accuracy"] == whole["test/accuracy"]
