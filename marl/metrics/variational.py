"""Classifier-based variational lower bound on I(X; Y) for discrete X and high-dimensional (continuous) Y.

For any conditional model q(x | y) (Barber & Agakov, 2003):

    I(X; Y) = H(X) - H(X | Y) >= H(X) + E_{p(x, y)}[log q(x | y)]

since H(X | Y) = E[-log p(x | y)] <= E[-log q(x | y)] (the gap is E_y KL(p(.|y) || q(.|y)) >= 0). q is a small
MLP classifier trained with cross-entropy on one random split; the bound is evaluated on the other split,
so the expectation is an unbiased average over samples the classifier never saw.

Which H(X): the plug-in entropy of the *held-out* labels, without Miller-Madow by default. That is exactly
the held-out cross-entropy of the best constant (label-only) predictor, so the estimate is "how much better
than the best y-blind guess the classifier does on the same samples": any classifier that ignores y scores
<= 0 on every split (Gibbs' inequality), so independence never shows up as positive information. The
plug-in H is biased low by about (m - 1) / (2 n_test), which only makes the bound more conservative;
``miller_madow=True`` removes that first-order bias (an unbiased estimate of the population bound for this q,
at the price of small positive values under independence). Both terms come from the same held-out samples,
and the bootstrap resamples held-out (label, log q) pairs together, recomputing H each time, so the CI
includes their covariance. It reflects the evaluation noise for this trained q only, not the training
variance (another split or seed gives another q).

Determinism: all randomness (split, initialisation, minibatches, bootstrap) comes from a private
``torch.Generator`` seeded by ``seed``, so the global torch RNG is left untouched (calling this during
training does not change the run) and repeated calls give the same result on the same device and threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from marl.metrics.information import bootstrap_ci, entropy_discrete

MIN_SAMPLES = 20  # below this a held-out estimate is meaningless
_MIN_DELTA = 1e-3  # validation cross-entropy gain (nats) that counts as an improvement for early stopping


@dataclass(frozen=True)
class ClassifierMIResult:
    """Lower bound on I(X; Y) in nats with its bootstrap CI (evaluation noise only) and diagnostics."""

    estimate: float  # H(X) + mean log q(x | y) on the held-out split
    low: float
    high: float
    entropy: float  # plug-in H(X) of the held-out labels
    cross_entropy: float  # held-out mean -log q(x | y)
    train_accuracy: float  # on the samples the classifier was fitted on
    test_accuracy: float  # on the held-out split
    n_train: int  # fitted + validation samples
    n_test: int
    epochs: int  # epochs trained (early stopping)
    temperature: float  # softmax temperature fitted on the validation samples


def _check(x_labels: Tensor, y_features: Tensor, test_fraction: float, val_fraction: float) -> Tensor:
    if not isinstance(x_labels, Tensor) or not isinstance(y_features, Tensor):
        raise TypeError("x_labels and y_features must be torch.Tensors")
    if x_labels.is_floating_point() or x_labels.is_complex():
        raise TypeError(f"x_labels must hold integer labels, got dtype {x_labels.dtype}")
    if x_labels.dim() != 1:
        raise ValueError(f"x_labels must have shape [N], got {tuple(x_labels.shape)}")
    if not y_features.is_floating_point():
        raise TypeError(f"y_features must be a floating-point tensor, got dtype {y_features.dtype}")
    if y_features.dim() == 1:
        y_features = y_features.unsqueeze(1)
    if y_features.dim() != 2 or y_features.shape[1] == 0:
        raise ValueError(f"y_features must have shape [N] or [N, d], got {tuple(y_features.shape)}")
    n = x_labels.shape[0]
    if y_features.shape[0] != n:
        raise ValueError(f"x_labels has {n} samples but y_features has {y_features.shape[0]}")
    if n < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples, got {n}")
    if not bool(torch.isfinite(y_features).all()):
        raise ValueError("y_features contains NaN or inf")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return y_features


def _init_mlp(sizes: list[int], gen: torch.Generator, device: torch.device) -> list[Tensor]:
    """Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear``'s default), from ``gen``."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float32) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen, dtype=torch.float32) * 2 - 1) * bound
        params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]
    return params


def _forward(params: list[Tensor], y: Tensor) -> Tensor:
    h = y
    for i in range(0, len(params) - 2, 2):
        h = torch.relu(F.linear(h, params[i], params[i + 1]))
    return F.linear(h, params[-2], params[-1])


def classifier_mi_lower_bound(
    x_labels: Tensor,
    y_features: Tensor,
    *,
    hidden: int = 64,
    layers: int = 1,
    epochs: int = 200,
    batch_size: int = 256,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    patience: int = 20,
    test_fraction: float = 0.5,
    val_fraction: float = 0.2,
    n_boot: int = 1000,
    level: float = 0.95,
    miller_madow: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> ClassifierMIResult:
    """Lower bound I(X; Y) >= H(X) + E[log q(x | y)] (nats) with an MLP classifier q; see the module doc.

    ``x_labels``: integer labels ``[N]``; ``y_features``: float ``[N]`` or ``[N, d]``. A random
    ``test_fraction`` of the samples is held out for the bound; of the rest, ``val_fraction`` is kept aside
    for early stopping (keep the epoch with the best validation cross-entropy; stop after ``patience`` epochs
    without a 1e-3 nats gain) and for fitting a softmax temperature (any q keeps the bound valid, and
    calibration tightens it). Features are standardised with the fitted samples' mean and std. The
    classifier has ``layers`` hidden ReLU layers of width ``hidden`` (0: multinomial logistic regression),
    trained with AdamW (``lr``, ``weight_decay``) on minibatches of ``batch_size`` for at most ``epochs``,
    starting from the fitted label marginal. The CI is a percentile bootstrap (``n_boot``, ``level``) over
    the held-out (label, log q) pairs. ``device``: where to train (default: the features' device).
    Raises ValueError / TypeError on mismatched shapes, non-integer labels, non-float or non-finite
    features, fewer than 2 classes or too few samples for the splits.
    """
    y_features = _check(x_labels, y_features, test_fraction, val_fraction)
    if hidden < 1 or layers < 0 or epochs < 1 or batch_size < 1 or patience < 1:
        raise ValueError("hidden, epochs, batch_size and patience must be >= 1 and layers >= 0")
    dev = torch.device(device) if device is not None else y_features.device
    classes, codes = torch.unique(x_labels, return_inverse=True)
    n_classes = classes.numel()
    if n_classes < 2:
        raise ValueError("x_labels needs at least 2 distinct classes")
    n = codes.numel()
    n_test = max(1, round(test_fraction * n))
    n_val = round(val_fraction * (n - n_test))
    n_fit = n - n_test - n_val
    if n_test < 2 or n_fit < 2:
        raise ValueError(f"split too small: {n_fit} fitted, {n_val} validation, {n_test} held-out samples")

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(x_labels.device)
    test_idx, fit_idx, val_idx = perm[:n_test], perm[n_test : n_test + n_fit], perm[n_test + n_fit :]

    with torch.inference_mode(False), torch.enable_grad():
        feats = y_features.detach().to(dev, torch.float32).clone()
        labels = codes.detach().to(dev).clone()
        mean = feats[fit_idx.to(dev)].mean(0)
        std = feats[fit_idx.to(dev)].std(0, correction=0)
        feats = (feats - mean) / torch.where(std > 0, std, torch.ones_like(std))
        splits = {
            name: (feats[idx.to(dev)], labels[idx.to(dev)])
            for name, idx in (("fit", fit_idx), ("val", val_idx), ("test", test_idx))
        }
        y_fit, x_fit = splits["fit"]
        y_val, x_val = splits["val"]

        params = _init_mlp([feats.shape[1]] + [hidden] * layers + [n_classes], gen, dev)
        with torch.no_grad():  # start from the fitted label marginal (a y-blind q: bound ~ 0)
            prior = torch.bincount(x_fit, minlength=n_classes).float() + 0.5
            params[-1].copy_(prior.log() - prior.log().mean())
            params[-2].mul_(0.1)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        best = (math.inf, [p.detach().clone() for p in params], 0)
        trained = 0
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n_fit, generator=gen).to(dev)
            for start in range(0, n_fit, batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(_forward(params, y_fit[batch]), x_fit[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            trained = epoch
            if n_val:
                with torch.no_grad():
                    val_loss = float(F.cross_entropy(_forward(params, y_val), x_val))
                if val_loss < best[0] - _MIN_DELTA:
                    best = (val_loss, [p.detach().clone() for p in params], epoch)
                elif epoch - best[2] >= patience:
                    break
        with torch.no_grad():
            if n_val:
                for p, b in zip(params, best[1]):
                    p.copy_(b)
                temps = torch.logspace(-1, 1, 81, device=dev)
                val_logits = _forward(params, y_val)
                losses = torch.stack([F.cross_entropy(val_logits / t, x_val) for t in temps])
                temperature = float(temps[int(losses.argmin())])
            else:
                temperature = 1.0
            logits = {name: _forward(params, y) for name, (y, _) in splits.items()}
            y_test, x_test = splits["test"]
            log_q = torch.log_softmax(logits["test"] / temperature, -1).gather(1, x_test.unsqueeze(1))[:, 0]
            train_acc = float((logits["fit"].argmax(1) == x_fit).float().mean())
            test_acc = float((logits["test"].argmax(1) == x_test).float().mean())

    log_q = log_q.detach().to(torch.float64)
    x_test = x_test.detach()

    def bound(labels: Tensor, lq: Tensor) -> Tensor:
        return entropy_discrete(labels, miller_madow=miller_madow) + lq.mean(-1)

    boot_gen = torch.Generator(device=x_test.device).manual_seed(seed + 1)
    estimate, low, high = bootstrap_ci(
        bound, x_test, log_q, n_boot=n_boot, level=level, generator=boot_gen, vectorized=True
    )
    entropy = float(entropy_discrete(x_test, miller_madow=miller_madow))
    return ClassifierMIResult(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        entropy=entropy,
        cross_entropy=float(-log_q.mean()),
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        n_train=n_fit + n_val,
        n_test=n_test,
        epochs=trained,
        temperature=temperature,
    )
