"""Fast adversarial training (``method=fgsm_rs`` and ``method=n_fgsm``) and the
catastrophic-overfitting guard, with the engine's generic stop request (a term asks to stop
and keep an earlier epoch)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dq
from dq.attacks import Start
from dq.data_records import Batch, DatasetMeta, Split
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer
from dq.errors import DQUserError
from dq.inference import eval_mode
from dq.objectives.adversarial import AdversarialConfig, FastFGSM, MadryPGD, NoisyFGSM
from dq.objectives.base import Objective, StopRequest, Term
from dq.objectives.overfitting_guard import GuardedTerm, OverfittingGuard, collapsed
from dq.objectives.registry import build_objective
from dq.rundir.read import read_jsonl
from dq.spec import to_spec
from run_checks import check_run

CPU = torch.device("cpu")
IMAGE = DatasetMeta(
    name="toy_image",
    modality="image",
    input_shape=(1, 8, 8),
    num_classes=3,
    class_names=("a", "b", "c"),
    valid_range=(0.0, 1.0),
)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((32, 1, 8, 8), generator=generator)
    x[:, :, :2] = torch.randint(0, 2, (32, 1, 2, 8), generator=generator).float()  # pixels at the bounds
    return x, torch.randint(0, 3, (32,), generator=generator)


# --------------------------------------------------------------------------- the attack
def test_fgsm_rs_is_one_step_of_1_25_eps_from_a_uniform_start_projected_to_ball_and_range(images) -> None:
    x, y = images
    eps = 0.1
    term = FastFGSM(AdversarialConfig(method="fgsm_rs", eps=eps, steps=10), IMAGE)
    assert term.attack.steps == 1 and term.attack.start == Start.uniform
    assert term.attack.step_size == pytest.approx(1.25 * eps)
    model = small_model()
    torch.manual_seed(3)
    delta = term.perturb(model, Batch(x=x, y=y))

    assert float(delta.abs().max()) <= eps + 1e-6  # in the ball
    assert float((x + delta).min()) >= 0.0 and float((x + delta).max()) <= 1.0  # in the valid range
    assert float(delta.abs().mean()) > 0.5 * eps  # moved
    # The same step by hand: the random start draws randn then rand (dq.attacks.pgd.random_start).
    torch.manual_seed(3)
    torch.randn(x.shape)
    start = (2 * torch.rand(x.shape) - 1) * eps
    start = (x + start).clamp(0, 1) - x
    start.requires_grad_(True)
    with eval_mode(model):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + start), y, reduction="sum"), start)
    expected = (x + (start.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1) - x
    assert torch.allclose(delta, expected, atol=1e-6)


def test_n_fgsm_takes_one_eps_step_from_2_eps_noise_and_leaves_the_eps_ball(images) -> None:
    """N-FGSM's perturbation is not projected back: on the same batch it reaches beyond ε
    (up to 3ε) where fgsm_rs' stays inside the ball; only the valid range clips it."""
    x, y = images
    eps = 0.1
    term = NoisyFGSM(AdversarialConfig(method="n_fgsm", eps=eps, steps=10), IMAGE)
    assert term.attack.steps == 1 and term.attack.start == Start.uniform
    assert term.attack.step_size == pytest.approx(eps) and term.attack.start_eps == pytest.approx(2 * eps)
    model = small_model()
    torch.manual_seed(3)
    delta = term.perturb(model, Batch(x=x, y=y))

    assert float(delta.abs().max()) > 2.5 * eps  # far outside the ε-ball
    assert float(delta.abs().max()) <= 3 * eps + 1e-6
    assert float((x + delta).min()) >= 0.0 and float((x + delta).max()) <= 1.0
    # The same step by hand: noise in [-2ε, 2ε] clipped to the range, a step of ε, clipped to the range only.
    torch.manual_seed(3)
    torch.randn(x.shape)
    start = (2 * torch.rand(x.shape) - 1) * 2 * eps
    start = (x + start).clamp(0, 1) - x
    start.requires_grad_(True)
    with eval_mode(model):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + start), y, reduction="sum"), start)
    expected = (x + start.detach() + eps * grad.sign()).clamp(0, 1) - x
    assert torch.allclose(delta, expected, atol=1e-6)
    torch.manual_seed(3)
    fgsm_rs = FastFGSM(AdversarialConfig(method="fgsm_rs", eps=eps), IMAGE).perturb(model, Batch(x=x, y=y))
    assert float(fgsm_rs.abs().max()) <= eps + 1e-6


def test_n_fgsm_noise_and_alpha_set_its_reach_under_l2_too(images) -> None:
    x, y = images
    cfg = AdversarialConfig(method="n_fgsm", norm="l2", eps=0.5, alpha=0.25, noise=1.0)
    term = build_objective({"adversarial": cfg}, IMAGE).terms[0].term  # guarded by default
    assert isinstance(term, NoisyFGSM) and term.attack.start_eps == pytest.approx(0.5)
    torch.manual_seed(0)
    norms = term.perturb(small_model(), Batch(x=x, y=y)).flatten(1).norm(dim=1)
    assert float(norms.max()) > 0.5 + 1e-3 and float(norms.max()) <= 0.75 + 1e-5  # beyond ε, within k·ε + α
    quiet = NoisyFGSM(AdversarialConfig(method="n_fgsm", eps=0.1, noise=0.0), IMAGE)  # k = 0: FGSM from x
    torch.manual_seed(0)
    assert float(quiet.perturb(small_model(), Batch(x=x, y=y)).abs().max()) <= 0.1 + 1e-6


def test_fgsm_rs_alpha_overrides_the_step_and_the_loss_mixes_as_pgd(images) -> None:
    x, y = images
    objective = build_objective(
        {"adversarial": AdversarialConfig(method="fgsm_rs", eps=0.2, alpha=0.05, weight=0.4, co_guard=False)}, IMAGE
    )
    (term,) = objective.terms
    assert isinstance(term, FastFGSM) and isinstance(term, MadryPGD)
    assert term.attack.step_size == pytest.approx(0.05) and objective.task_weight == pytest.approx(0.6)
    model = small_model().train()
    out = objective(model, Batch(x=x, y=y))
    assert float(out.loss.detach()) == pytest.approx(
        0.6 * float(out.terms["task"]) + 0.4 * float(out.terms["adversarial"])
    )
    assert float(out.terms["adversarial"]) > float(out.terms["task"])
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_pure_adversarial_training_runs_the_clean_forward_without_a_graph_and_trains_alike(images) -> None:
    """weight=1: the clean logits feed train/accuracy only (Term.reads_logits), so they get no
    graph; the loss and every gradient are those of a run that builds it."""
    x, y = images
    objective = build_objective({"adversarial": AdversarialConfig(method="fgsm_rs", eps=0.1)}, IMAGE)
    assert not objective.clean_graph and not objective.terms[0].reads_logits
    runs = []
    for graph in (False, True):
        objective.clean_graph = graph
        model = small_model().train()
        torch.manual_seed(5)  # the same random start
        out = objective(model, Batch(x=x, y=y))
        out.loss.backward()
        runs.append((out.logits.requires_grad, out.loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (no_graph, loss, grads), (with_graph, loss_again, grads_again) = runs
    assert not no_graph and with_graph
    assert torch.equal(loss, loss_again) and all(torch.allclose(a, b) for a, b in zip(grads, grads_again, strict=True))
    # Where the clean logits enter the loss, they keep their graph.
    for cfg in (AdversarialConfig(method="fgsm_rs", weight=0.5), AdversarialConfig(method="trades", weight=6.0)):
        assert build_objective({"adversarial": cfg}, IMAGE).clean_graph


def test_the_guard_is_on_by_default_for_the_one_step_methods_only_and_passes_the_term_through() -> None:
    fgsm = build_objective({"adversarial": AdversarialConfig(method="fgsm_rs")}, IMAGE).terms[0]
    noisy = build_objective({"adversarial": AdversarialConfig(method="n_fgsm")}, IMAGE).terms[0]
    pgd = build_objective({"adversarial": AdversarialConfig(method="pgd")}, IMAGE).terms[0]
    guarded_pgd = build_objective({"adversarial": AdversarialConfig(method="pgd", co_guard=True)}, IMAGE).terms[0]
    assert isinstance(fgsm, GuardedTerm) and isinstance(fgsm.term, FastFGSM)
    assert isinstance(noisy, GuardedTerm) and isinstance(noisy.term, NoisyFGSM) and noisy.term.validation.every == 3
    unguarded = build_objective({"adversarial": AdversarialConfig(method="n_fgsm", co_guard=False)}, IMAGE).terms[0]
    assert isinstance(unguarded, NoisyFGSM)
    assert isinstance(pgd, MadryPGD) and isinstance(guarded_pgd, GuardedTerm)
    assert fgsm.name == "adversarial" and fgsm.weight == 1.0 and fgsm.task_share == 1.0
    assert fgsm.attack.steps == 1  # the term's attack; the guard has none: it watches val/robust_accuracy
    assert fgsm.guard.metric == "val/robust_accuracy" and fgsm.guard.drop == 0.2
    # fgsm_rs measures val/robust_accuracy every 3rd epoch (its cost budget), PGD every epoch.
    assert fgsm.term.validation.every == 3 and pgd.validation.every == 1 and guarded_pgd.term.validation.every == 1
    spaced_pgd = build_objective({"adversarial": AdversarialConfig(method="pgd", val_every=2)}, IMAGE).terms[0]
    assert spaced_pgd.validation.every == 2


REFUSED = {
    "random_start": (False, r"^regularizer\.adversarial\.random_start must be true for method=fgsm_rs"),
    "weight": (1.5, r"^regularizer\.adversarial\.weight mixes clean and adversarial loss for method=fgsm_rs"),
    "co_guard_drop": (0.0, r"^regularizer\.adversarial\.co_guard_drop must be in \(0, 1\], got 0\.0$"),
    "val_every": (0, r"^regularizer\.adversarial\.val_every must be >= 1 or null, got 0$"),
}
REFUSED_N_FGSM = {
    "random_start": (False, r"^regularizer\.adversarial\.random_start must be true for method=n_fgsm"),
    "noise": (
        -1.0,
        r"^regularizer\.adversarial\.noise must be >= 0 \(n_fgsm's noise radius in units of eps\), got -1\.0$",
    ),
}


def test_bad_fgsm_rs_and_n_fgsm_settings_are_refused_in_one_line(make_cfg) -> None:
    base = make_cfg("dataset=digits", "regularizer=[adversarial]", "regularizer.adversarial.method=fgsm_rs")
    to_spec(base)  # the defaults are valid
    cases = [("fgsm_rs", key, value, message) for key, (value, message) in REFUSED.items()]
    cases += [("n_fgsm", key, value, message) for key, (value, message) in REFUSED_N_FGSM.items()]
    for method, key, value, message in cases:  # one composition for all: each costs ~2 s
        cfg = copy.deepcopy(base)
        cfg.regularizer.adversarial.method = method
        to_spec(cfg)  # valid before the change
        cfg.regularizer.adversarial[key] = value
        with pytest.raises(DQUserError, match=message) as caught:
            to_spec(cfg)
        assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the guard's decision
def test_collapsed_only_on_a_fall_larger_than_drop_below_the_best() -> None:
    assert not collapsed(0.6, 0.45, 0.2) and collapsed(0.6, 0.39, 0.2)
    assert collapsed(0.8, 0.0, 0.2)  # to ~0: the catastrophic case
    assert not collapsed(0.15, 0.0, 0.2)  # never robust: nothing to lose


def test_guard_fires_on_a_collapse_and_requests_the_best_epochs_weights() -> None:
    term = GuardedTerm(MadryPGD(AdversarialConfig(), IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    model = small_model()
    weights_by_epoch = []
    # NaN: an epoch without a measurement (val_every > 1), which changes nothing.
    for epoch, accuracy in enumerate([0.30, math.nan, 0.55, 0.62, math.nan, 0.50, 0.05], start=1):
        with torch.no_grad():
            model[1].bias.fill_(float(epoch))  # tell the epochs' weights apart
        weights_by_epoch.append(model[1].bias.clone())
        fired = term.guard.update(accuracy, model)
        assert fired == (epoch == 7)
        assert (term.stop_request() is None) == (epoch < 7)
    request = term.stop_request()
    assert isinstance(request, StopRequest) and request.rollback_epoch == 4
    assert torch.equal(request.rollback_state["1.bias"], weights_by_epoch[3])
    assert request.metrics == {"train/co_guard_fired_epoch": 7, "train/co_guard_rollback_epoch": 4}
    assert request.reason.startswith(
        "catastrophic overfitting guard: val/robust_accuracy fell from 0.620 (epoch 4) to 0.050 in epoch 7"
    )
    assert "\n" not in request.reason
    # The state a resumed run needs brings the same decision back.
    again = GuardedTerm(MadryPGD(AdversarialConfig(), IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    again.load_state_dict(term.state_dict())
    assert again.stop_request() == request


def test_spaced_robust_validation_measures_every_kth_epoch_and_the_guard_reads_it() -> None:
    generator = torch.Generator().manual_seed(1)
    val = Split(x=torch.rand((40, 1, 8, 8), generator=generator), y=torch.randint(0, 3, (40,), generator=generator))
    model = small_model()
    every_epoch = MadryPGD(AdversarialConfig(steps=3, val_limit=16), IMAGE)
    measured = every_epoch.end_epoch(model, val, CPU)["val/robust_accuracy"]
    assert every_epoch.state_dict()["examples"] == 16  # val_limit is below the minimum of 100: 16 attacked
    with torch.no_grad(), eval_mode(model):
        clean = float((model(val.x[:16]).argmax(1) == val.y[:16]).float().mean())
    assert 0.0 <= measured <= clean  # an attack never helps
    cfg = AdversarialConfig(method="fgsm_rs", steps=3, val_limit=16)
    term = GuardedTerm(FastFGSM(cfg, IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    logged = [term.end_epoch(model, val, CPU)["val/robust_accuracy"] for _ in range(3)]
    assert math.isnan(logged[0]) and math.isnan(logged[1]) and logged[2] == measured  # the same seeded attack
    assert term.guard.best == measured and term.guard.best_epoch == 3 and term.guard.epochs == 3
    # A resumed run keeps the spacing: the count travels in the term's state.
    again = GuardedTerm(FastFGSM(cfg, IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    again.load_state_dict(term.state_dict())
    resumed = [again.end_epoch(model, val, CPU)["val/robust_accuracy"] for _ in range(3)]
    assert [math.isnan(value) for value in resumed] == [True, True, False]
    assert again.guard.epochs == 6 and again.guard.best_epoch == 3


@pytest.mark.parametrize(("epochs", "measured"), [(6, [3, 6]), (4, [3, 4]), (7, [3, 6, 7])])
def test_spaced_robust_validation_also_measures_the_fits_last_epoch_and_only_it(epochs: int, measured: list) -> None:
    """The last epoch (start_fit) is measured off the spacing, so its weights can be
    selected; the epochs between stay unmeasured (NaN), a resumed run's too."""
    generator = torch.Generator().manual_seed(1)
    val = Split(x=torch.rand((40, 1, 8, 8), generator=generator), y=torch.randint(0, 3, (40,), generator=generator))
    model = small_model()
    cfg = AdversarialConfig(method="n_fgsm", steps=2, val_limit=16)
    term = GuardedTerm(NoisyFGSM(cfg, IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    objective = Objective([term])
    objective.start_fit(epochs)
    logged = [objective.end_epoch(model, val, CPU)["val/robust_accuracy"] for _ in range(epochs - 1)]
    again = GuardedTerm(NoisyFGSM(cfg, IMAGE), OverfittingGuard("val/robust_accuracy", drop=0.2))
    again.load_state_dict(term.state_dict())  # resumed before the last epoch
    Objective([again]).start_fit(epochs)
    logged.append(again.end_epoch(model, val, CPU)["val/robust_accuracy"])
    assert [epoch for epoch, value in enumerate(logged, 1) if not math.isnan(value)] == measured
    assert len(set(value for value in logged if not math.isnan(value))) == 1  # one seeded attack, weights unchanged


def test_robust_validation_attacks_a_share_of_the_training_passes_fixed_at_its_first_measurement(caplog) -> None:
    """fgsm_rs trains with 2 passes per example; PGD-3 validation costs 4 per example, so
    after 3 epochs of 1,000 examples (6,000 passes) 15% buys 225 of 400 validation examples,
    chosen once, logged once; below the minimum (one epoch: 75) 100 are attacked."""
    generator = torch.Generator().manual_seed(2)
    val = Split(x=torch.rand((400, 1, 8, 8), generator=generator), y=torch.randint(0, 3, (400,), generator=generator))
    train = Batch(
        x=torch.rand((1000, 1, 8, 8), generator=generator), y=torch.randint(0, 3, (1000,), generator=generator)
    )
    model = small_model()

    def measured(val_every: int, epochs: int) -> tuple[FastFGSM, list[float]]:
        term = FastFGSM(AdversarialConfig(method="fgsm_rs", steps=3, val_every=val_every), IMAGE)
        logged = []
        for _ in range(epochs):
            term(model, train, model(train.x))
            logged.append(term.end_epoch(model, val, CPU)["val/robust_accuracy"])
        return term, logged

    with caplog.at_level("INFO", logger="dq.objectives.adversarial"):
        capped, logged = measured(val_every=3, epochs=6)
    assert capped.validation.examples == 225  # the cap fires: fewer than the 400 available and val_limit's 500
    assert [math.isnan(value) for value in logged] == [True, True, False] * 2
    assert logged[2] * 225 == pytest.approx(round(logged[2] * 225), abs=1e-4)
    assert logged[5] == logged[2]  # the same examples and seeded start (weights unchanged here)
    chosen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("val/robust_accuracy")]
    assert chosen == [
        "val/robust_accuracy: PGD-3 on the first 225 of 400 validation examples every 3 epoch(s) "
        "(val_limit 500; cap 225: 15% of the 6000 training attack passes so far / 4 passes per example)"
    ]
    floor, _ = measured(val_every=1, epochs=1)
    assert floor.validation.examples == 100  # the cap (75) does not fire below the minimum
    again = FastFGSM(AdversarialConfig(method="fgsm_rs", steps=3, val_every=3), IMAGE)
    again.load_state_dict(capped.state_dict())  # a resumed run attacks the same examples
    assert again.validation.examples == 225 and again.validation.epochs == 6


# --------------------------------------------------------------------------- the engine's stop request
class StopAt(Term):
    """A real term of the protocol (zero loss) that asks the engine to stop after epoch
    ``stop`` and keep the weights it saw at the end of epoch ``keep``."""

    name = "stopper"
    weight = 1.0

    def __init__(self, stop: int, keep: int) -> None:
        self.stop, self.keep, self.epochs = stop, keep, 0
        self.kept: dict[str, torch.Tensor] | None = None

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return 0.0 * logits.sum()

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        self.epochs += 1
        if self.epochs == self.keep:
            self.kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {}

    def stop_request(self) -> StopRequest | None:
        if self.epochs < self.stop:
            return None
        return StopRequest("stop asked", self.keep, self.kept, {"train/stop_epoch": self.stop})


def test_a_term_stops_the_loop_and_its_rollback_epoch_is_selected(make_cfg, tmp_path: Path) -> None:
    spec = to_spec(
        make_cfg("dataset=digits", "model=mlp", "dataset.limit=200", "trainer.select=last", "trainer.epochs=6")
    )
    splits = dq.data.build(spec.dataset, spec.seed)
    model = dq.models.build(spec.model, splits.meta)
    term = StopAt(stop=3, keep=2)
    result = fit(
        model,
        Objective([term]),
        splits,
        optimizer=build_optimizer(spec.optimizer, model.parameters()),
        scheduler=None,
        settings=FitSettings(spec.trainer, CPU, seed=0, run_dir=tmp_path),
    )
    assert len(result.history) == 3 and result.stopped_early and result.stop_request.reason == "stop asked"
    assert result.selected_epoch == 2  # select=last would take epoch 3; the request rolls back
    assert all(torch.equal(result.best_state[k], term.kept[k]) for k in term.kept)
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and all(torch.equal(best["model"][k], term.kept[k]) for k in term.kept)
    assert not all(torch.equal(model.state_dict()[k], term.kept[k]) for k in term.kept)  # epoch 3 trained on


# --------------------------------------------------------------------------- real runs
FGSM_RUN = (
    "dataset=digits",
    "model=cnn",
    "dataset.limit=300",
    "optimizer=sgd",
    "optimizer.lr=0.1",
    "regularizer=[adversarial]",
    "regularizer.adversarial.method=fgsm_rs",
    "regularizer.adversarial.val_every=1",
    "regularizer.adversarial.steps=3",
    "eval.robust.eps=[0.1]",
    "eval.robust.steps=3",
    "explain.enabled=false",
    "trainer.epochs=5",
    "trainer.select=last",
)


def test_the_guard_judges_a_real_fgsm_rs_run_and_a_fired_run_evaluates_its_best_epoch(make_cfg, tmp_path: Path) -> None:
    """One real trajectory of val/robust_accuracy judged both ways. With the default drop
    (0.2) its dip (0.406 → 0.367 in epoch 5, measured) passes: all epochs train, select=last
    keeps epoch 5. With a drop of 0.03 the same run must fire at the first epoch that lies
    more than 0.03 below the best before it, stop there, and keep the best epoch: best.pt,
    metrics.json's selected epoch and the test metrics are that epoch's, not the last one's."""
    calm = dq.train(make_cfg(*FGSM_RUN), run_dir=tmp_path / "calm")
    check_run(tmp_path / "calm", calm, epochs=5)
    robust = [epoch["val/robust_accuracy"] for epoch in read_jsonl(tmp_path / "calm" / "metrics.jsonl")]
    assert calm["train/selected_epoch"] == 5 and "train/co_guard_fired_epoch" not in calm
    assert not any(collapsed(max(robust[:i]), robust[i], 0.2) for i in range(1, 5))
    fall = next(i for i in range(1, 5) if collapsed(max(robust[:i]), robust[i], 0.03))  # 0-based: epoch fall + 1
    best = 1 + robust.index(max(robust[:fall]))

    fired = dq.train(make_cfg(*FGSM_RUN, "regularizer.adversarial.co_guard_drop=0.03"), run_dir=tmp_path / "fired")
    epochs = read_jsonl(tmp_path / "fired" / "metrics.jsonl")
    assert [e["val/robust_accuracy"] for e in epochs] == robust[: fall + 1]  # the same run, stopped
    assert epochs[-1]["adversarial/co_guard_fired_epoch"] == fall + 1
    assert fired["train/co_guard_fired_epoch"] == fall + 1 and fired["train/co_guard_rollback_epoch"] == best
    assert fired["train/selected_epoch"] == best < fall + 1  # select=last, overruled by the guard
    checkpoints = tmp_path / "fired" / "checkpoints"
    kept = torch.load(checkpoints / "best.pt", weights_only=True)
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    assert kept["epoch"] == best
    assert not all(torch.equal(kept["model"][k], last["model"][k]) for k in kept["model"])
    run = dq.load_run(tmp_path / "fired")  # the model of best.pt scores the run's test metrics
    with torch.no_grad(), eval_mode(run.model):
        accuracy = float((run.model(run.splits.test.x).argmax(1) == run.splits.test.y).float().mean())
    assert fired["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize("method", ["fgsm_rs", "n_fgsm"])
def test_one_step_methods_move_the_text_embedding(make_cfg, tmp_path: Path, method: str) -> None:
    cfg = make_cfg(
        "dataset=reviews",
        "model=rnn",
        "dataset.limit=64",
        "regularizer=[adversarial]",
        f"regularizer.adversarial.method={method}",
        "regularizer.adversarial.steps=2",
        "regularizer.adversarial.val_every=1",
        "eval.robust.eps=[0.1]",
        "eval.robust.steps=2",
        "explain.enabled=false",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epoch = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert math.isfinite(epoch["train/adversarial"]) and epoch["train/adversarial"] > 0
    # The validation split (at most 64 texts) is smaller than val_limit: all of it is attacked,
    # so the robust accuracy the guard watches is a count over that split, at most the clean one.
    examples = len(dq.load_run(tmp_path / "run").splits.val)
    correct = epoch["val/robust_accuracy"] * examples
    assert correct == pytest.approx(round(correct), abs=1e-4)
    assert epoch["val/robust_accuracy"] <= epoch["val/accuracy"]
    assert metrics["test/robust_accuracy@0.1"] <= metrics["test/accuracy"]


def test_a_short_default_fgsm_rs_run_measures_its_last_epoch_off_the_spacing(make_cfg, tmp_path) -> None:
    """fgsm_rs measures val/robust_accuracy every 3rd epoch and at the run's last: a 2-epoch
    run monitoring it measures epoch 2 (not epoch 1) and selects it as its best, rather than
    ending with nothing measured and weights no measurement chose."""
    cfg = make_cfg(
        "dataset=digits",
        "model=cnn",
        "dataset.limit=200",
        "regularizer=[adversarial]",
        "regularizer.adversarial.method=fgsm_rs",
        "regularizer.adversarial.steps=2",
        "trainer.epochs=2",
        "trainer.early_stopping.monitor=val/robust_accuracy",
        "explain.enabled=false",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [math.isnan(epoch["val/robust_accuracy"]) for epoch in epochs] == [True, False]
    assert 0 <= epochs[1]["val/robust_accuracy"] <= epochs[1]["val/accuracy"]
    assert metrics["train/selected_epoch"] == 2 and metrics["train/best_epoch"] == 2
