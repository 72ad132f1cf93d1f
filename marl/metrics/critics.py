"""Neural critics for I(X; Y) in high dimension, many of them trained at once as one batched model.

A critic f(x, y) scores pairs; a variational bound turns the scores of paired samples (x_i, y_i) and of
mismatched ones (x_i, y_j), j != i, into an MI estimate. Families (``critic=``):

* ``"separable"``: f(x, y) = g(x) . h(y), two MLP encoders into ``embed`` dims. All B x B scores of a batch
  are one matrix product, so every sample is a negative for all the others at no extra cost.
* ``"concat"``: f(x, y) = MLP([x, y]), the most general; its first layer is split (W_x x + W_y y) so the
  B x B pairs share the per-sample products, but every further layer runs on B^2 pairs: use a smaller
  batch.
* ``"variational"`` (probabilistic): the x encoder outputs a Gaussian N(mu(x), diag sigma^2(x)) over the
  embedding and f(x, y) = log N(h(y); mu(x), sigma^2(x)) + u(x): the log-likelihood of y's embedding under
  a distribution predicted from x (u(x) a learned offset). The uncertainty is part of the critic, which
  keeps the scores of confident and unconfident x on one scale; with linear encoders it contains the
  exact log density ratio of a Gaussian pair (it is quadratic in the embeddings). Still a matrix product.

Objectives (``objective=``), each a lower bound on I for any critic:

* ``"infonce"``: I >= log B + mean_i [f(x_i, y_i) - logsumexp_j f(x_i, y_j)] (symmetrised over x and y);
  it can never exceed log B (B = the number of samples it is evaluated on), so it saturates at high MI.
* ``"smile"``: the Donsker-Varadhan bound with the partition term clipped,
  mean_i f(x_i, y_i) - log mean_{i != j} exp(clip(f(x_i, y_j), -tau, tau)) (Song & Ermon, 2020): no
  log B ceiling, and the clip keeps its variance finite.

Training (the protocol of Abdelaleem, Martini & Nemenman, 2025): each data set is split at random into a
fitting, a validation and a test part; minibatches of the fitting part train the critic (Adam); every
``eval_every`` steps the objective is measured on the validation part and the critic with the best value
is kept (early stopping after ``patience`` evaluations without improvement); the estimate is the bound on
the untouched test part. Training and testing on different samples keeps an over-fitted critic from
reporting information that is not there (on a test set a critic can only lose).

Batching: :func:`critic_estimates` trains one critic per data set for many data sets at once (e.g. every
subsample of the subsampling-extrapolation protocol, marl/metrics/extrapolation.py): parameters are
stacked ``[M, ...]`` and applied with batched matrix products, data sets of different sizes are padded,
and each model draws its minibatches from its own fitting part. Runs on the device of the data (CUDA when
present); all randomness comes from a private generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Critic = Literal["separable", "concat", "variational"]
Objective = Literal["infonce", "smile"]
CRITICS = ("separable", "concat", "variational")
OBJECTIVES = ("infonce", "smile")


@dataclass(frozen=True)
class CriticConfig:
    """Critic family, objective and training settings (see the module doc)."""

    critic: Critic = "separable"
    objective: Objective = "infonce"
    hidden: int = 64  # width of the hidden layers
    layers: int = 2  # hidden layers per MLP
    embed: int = 16  # embedding dims of the separable / variational encoders
    batch_size: int = 128  # samples per minibatch (the concat critic scores batch_size^2 pairs)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_steps: int = 3000
    eval_every: int = 25  # steps between validation measurements
    patience: int = 8  # validation measurements without improvement before a model stops
    min_delta: float = 1e-3  # nats: a smaller validation gain is no improvement
    val_samples: int = 512  # cap on the validation samples scored per measurement
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    clip: float = 5.0  # SMILE's tau
    negatives: int = 256  # concat critic: negatives per test sample (all pairs for the others)
    gaussian_base: bool = True  # add the closed-form Gaussian log density ratio (fitted on the fitting part)

    def __post_init__(self) -> None:
        if self.critic not in CRITICS:
            raise ValueError(f"unknown critic {self.critic!r}; expected one of {CRITICS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of {OBJECTIVES}")
        if min(self.hidden, self.embed, self.batch_size, self.max_steps, self.eval_every, self.patience) < 1:
            raise ValueError("hidden, embed, batch_size, max_steps, eval_every and patience must be >= 1")
        if self.layers < 0:
            raise ValueError("layers must be >= 0")
        if not (
            0 < self.test_fraction < 1
            and 0 < self.val_fraction < 1
            and self.test_fraction + self.val_fraction < 1
        ):
            raise ValueError("test_fraction and val_fraction must be in (0, 1) with a sum below 1")

    @property
    def name(self) -> str:
        return f"{self.critic}/{self.objective}"


# --------------------------------------------------------------------------------------------------------
# Batched MLPs: parameters [M, fan_in, fan_out], inputs [M, B, fan_in]
# --------------------------------------------------------------------------------------------------------


def _init(m: int, sizes: list[int], gen: torch.Generator, device: torch.device) -> list[Tensor]:
    """Stacked weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear's default) and zero biases."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(m, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        params += [w.to(device), torch.zeros(m, 1, fan_out, device=device)]
    return params


def _mlp(params: list[Tensor], h: Tensor) -> Tensor:
    for i in range(0, len(params) - 2, 2):
        h = torch.relu(torch.baddbmm(params[i + 1], h, params[i]))
    return torch.baddbmm(params[-1], h, params[-2])


class _GaussianBase:
    """The log density ratio log p(x, y) / (p(x) p(y)) of the Gaussian with each model's fitting-part mean
    and covariance, for all pairs: a quadratic form, so matrix products again. Exact for Gaussian data
    (and, after the copula transform, for any Gaussian copula), it lets a neural critic start from the
    linear-Gaussian answer and learn only what is not Gaussian."""

    def __init__(self, x_all: Tensor, y_all: Tensor, start: Tensor, length: Tensor, ridge: float = 1e-4):
        m, n_max, dx = x_all.shape
        z = torch.cat([x_all, y_all], -1).double()
        rows = torch.arange(n_max, device=z.device).unsqueeze(0)
        mask = ((rows >= start.unsqueeze(1)) & (rows < (start + length).unsqueeze(1))).unsqueeze(-1).double()
        count = length.double().view(m, 1, 1)
        mean = (z * mask).sum(1, keepdim=True) / count
        centred = (z - mean) * mask
        eye = torch.eye(z.shape[-1], dtype=torch.float64, device=z.device)
        cov = centred.transpose(1, 2) @ centred / (count - 1) + ridge * eye
        precision = torch.linalg.inv(cov)
        sxx, syy = cov[:, :dx, :dx], cov[:, dx:, dx:]
        self.a = (precision[:, :dx, :dx] - torch.linalg.inv(sxx)).float()
        self.c = (precision[:, dx:, dx:] - torch.linalg.inv(syy)).float()
        self.b = precision[:, :dx, dx:].float()
        self.const = (0.5 * (torch.logdet(sxx) + torch.logdet(syy) - torch.logdet(cov))).float().view(m, 1, 1)
        self.mx, self.my = mean[:, :, :dx].float(), mean[:, :, dx:].float()

    def pair_scores(self, i: int, x: Tensor, y: Tensor) -> Tensor:
        """Model ``i`` on explicit pairs: x [r, c, dx], y [r, c, dy] -> [r, c]."""
        xc, yc = x - self.mx[i], y - self.my[i]
        qx = ((xc @ self.a[i]) * xc).sum(-1)
        qy = ((yc @ self.c[i]) * yc).sum(-1)
        cross = ((xc @ self.b[i]) * yc).sum(-1)
        return self.const[i, 0, 0] - 0.5 * (qx + qy) - cross

    def scores(self, x: Tensor, y: Tensor) -> Tensor:
        xc, yc = x - self.mx, y - self.my
        qx = (torch.bmm(xc, self.a) * xc).sum(-1)  # [M, Bx]
        qy = (torch.bmm(yc, self.c) * yc).sum(-1)  # [M, By]
        cross = torch.bmm(torch.bmm(xc, self.b), yc.transpose(1, 2))
        return self.const - 0.5 * (qx.unsqueeze(2) + qy.unsqueeze(1)) - cross


class _Critics:
    """M critics of one family, parameters stacked; ``scores`` gives [M, Bx, By] for all pairs."""

    def __init__(
        self, cfg: CriticConfig, m: int, dx: int, dy: int, gen: torch.Generator, device: torch.device
    ):
        self.cfg = cfg
        hidden = [cfg.hidden] * cfg.layers
        if cfg.critic == "separable":
            self.groups = [
                _init(m, [dx, *hidden, cfg.embed], gen, device),
                _init(m, [dy, *hidden, cfg.embed], gen, device),
            ]
        elif cfg.critic == "variational":  # x -> (mu, log sigma^2, u), y -> embedding
            self.groups = [
                _init(m, [dx, *hidden, 2 * cfg.embed + 1], gen, device),
                _init(m, [dy, *hidden, cfg.embed], gen, device),
            ]
        else:  # concat: first layer split into x and y parts, then an MLP on the pairs
            first = _init(m, [dx + dy, cfg.hidden], gen, device)
            self.groups = [first, _init(m, [cfg.hidden] * cfg.layers + [1], gen, device)]
        if cfg.gaussian_base:  # start the learned part at 0, so the critic starts at the Gaussian one
            with torch.no_grad():
                last = self.groups[-1]
                last[-2].zero_()
                last[-1].zero_()
        self.base: _GaussianBase | None = None
        for p in self.params:
            p.requires_grad_(True)

    @property
    def params(self) -> list[Tensor]:
        return [p for group in self.groups for p in group]

    def snapshot(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]

    def restore(self, saved: list[Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(self.params, saved):
                p.copy_(s)

    def keep(self, saved: list[Tensor], improved: Tensor) -> None:
        """Copy the current parameters of the ``improved`` models [M] (bool) into ``saved``."""
        with torch.no_grad():
            for p, s in zip(self.params, saved):
                s.copy_(torch.where(improved.view(-1, *([1] * (p.dim() - 1))), p, s))

    def scores(self, x: Tensor, y: Tensor) -> Tensor:
        """f(x_i, y_j) for every pair: x [M, Bx, dx], y [M, By, dy] -> [M, Bx, By]."""
        learned = self._learned(x, y)
        return learned if self.base is None else learned + self.base.scores(x, y)

    def _learned(self, x: Tensor, y: Tensor) -> Tensor:
        cfg = self.cfg
        if cfg.critic == "separable":
            return torch.bmm(_mlp(self.groups[0], x), _mlp(self.groups[1], y).transpose(1, 2))
        if cfg.critic == "variational":
            out = _mlp(self.groups[0], x)
            k = cfg.embed
            mu, log_var, offset = out[..., :k], out[..., k : 2 * k].clamp(-8.0, 8.0), out[..., 2 * k :]
            precision = torch.exp(-log_var)  # [M, Bx, k]
            h = _mlp(self.groups[1], y)  # [M, By, k]
            # log N(h; mu, sigma^2) = -1/2 sum_k [(h - mu)^2 / sigma^2 + log sigma^2 + log 2 pi], expanded
            # into matrix products: h^2 . prec - 2 h . (mu prec) + mu^2 . prec
            quad = torch.bmm(precision, h.square().transpose(1, 2)) - 2 * torch.bmm(
                mu * precision, h.transpose(1, 2)
            )
            own = (mu.square() * precision + log_var).sum(-1, keepdim=True)  # [M, Bx, 1]
            return offset - 0.5 * (quad + own)
        w, b = self.groups[0]
        dx = x.shape[-1]
        ax = torch.baddbmm(b, x, w[:, :dx])  # [M, Bx, H]
        ay = torch.bmm(y, w[:, dx:])  # [M, By, H]
        pairs = torch.relu(ax.unsqueeze(2) + ay.unsqueeze(1))  # [M, Bx, By, H]
        m, bx, by, hdim = pairs.shape
        rest = self.groups[1]
        return _mlp(rest, pairs.reshape(m, bx * by, hdim)).reshape(m, bx, by)


# --------------------------------------------------------------------------------------------------------
# Bounds on a score matrix with a validity mask
# --------------------------------------------------------------------------------------------------------


def _js_objective(scores: Tensor) -> Tensor:
    """The Jensen-Shannon (f-GAN) objective per model, what SMILE trains its critic with (its own clipped
    Donsker-Varadhan value is unbounded in the paired scores, so it cannot be maximised directly):
    E_P[-softplus(-f)] - E_Q[softplus(f)], P the paired samples (diagonal), Q the mismatched ones."""
    b = scores.shape[-1]
    diag = scores.diagonal(dim1=1, dim2=2)
    off = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    positive = -F.softplus(-diag).mean(1)
    negative = (F.softplus(scores) * off).sum((1, 2)) / (b * (b - 1))
    return positive - negative


def _bound(scores: Tensor, valid: Tensor, cfg: CriticConfig) -> Tensor:
    """The objective's MI bound per model from scores [M, B, B] whose rows/columns ``valid`` [M, B] are
    real samples (padding elsewhere); the diagonal holds the paired samples."""
    m, b, _ = scores.shape
    count = valid.sum(1).to(scores.dtype)  # [M]
    pair_mask = valid.unsqueeze(2) & valid.unsqueeze(1)
    diag = scores.diagonal(dim1=1, dim2=2)
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    if cfg.objective == "infonce":
        masked = scores.masked_fill(~pair_mask, -torch.inf)
        rows = diag - masked.logsumexp(2)  # log softmax over y_j for each x_i
        cols = diag - masked.logsumexp(1)  # and over x_j for each y_i
        terms = 0.5 * (rows + cols)
        return count.log() + torch.where(valid, terms, 0.0).sum(1) / count
    joint = torch.where(valid, diag, 0.0).sum(1) / count
    off = pair_mask & ~eye
    clipped = scores.clamp(-cfg.clip, cfg.clip).masked_fill(~off, -torch.inf)
    log_partition = clipped.flatten(1).logsumexp(1) - (count * (count - 1)).log()
    return joint - log_partition


# --------------------------------------------------------------------------------------------------------
# Training many critics at once
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticRun:
    """Per data set: the test estimate, the Gaussian base's test estimate, the validation bound at the kept
    step, that step, and the number of test samples (the InfoNCE ceiling is log of it)."""

    estimate: Tensor  # [M]
    base: Tensor  # [M]: the same bound with the Gaussian base alone (NaN without one)
    validation: Tensor  # [M]
    best_step: Tensor  # [M]
    n_test: Tensor  # [M]


def _pad(sets: list[Tensor], size: int) -> Tensor:
    return torch.stack([F.pad(s, (0, 0, 0, size - s.shape[0])) for s in sets])


def critic_estimates(
    xs: list[Tensor], ys: list[Tensor], cfg: CriticConfig = CriticConfig(), *, seed: int = 0
) -> CriticRun:
    """Train one critic per data set ``(xs[i], ys[i])`` (float ``[n_i, dx]``, ``[n_i, dy]``, already
    transformed; the rows in random order) all at once, and estimate I on each one's test part.

    Each data set's first ``test_fraction`` rows are its test part, the next ``val_fraction`` its
    validation part, the rest its fitting part.
    """
    if not xs or len(xs) != len(ys):
        raise ValueError("need as many x as y data sets, at least one")
    device = xs[0].device
    m = len(xs)
    dx, dy = xs[0].shape[-1], ys[0].shape[-1]
    sizes = torch.tensor([x.shape[0] for x in xs])
    n_test = (sizes * cfg.test_fraction).round().long()
    n_val = (sizes * cfg.val_fraction).round().long()
    n_fit = sizes - n_test - n_val
    if int(n_fit.min()) < 2 or int(n_test.min()) < 2 or int(n_val.min()) < 2:
        raise ValueError(f"data sets of {int(sizes.min())} samples are too small to split for a critic")
    gen = torch.Generator().manual_seed(seed)
    n_max = int(sizes.max())
    x_all = _pad([x.to(torch.float32) for x in xs], n_max)  # [M, n_max, dx]
    y_all = _pad([y.to(torch.float32) for y in ys], n_max)
    critics = _Critics(cfg, m, dx, dy, gen, device)
    fit_start = (n_test + n_val).to(device)
    if cfg.gaussian_base:
        critics.base = _GaussianBase(x_all, y_all, fit_start, n_fit.to(device))
    opt = torch.optim.Adam(critics.params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # validation rows: the first val_samples rows of each validation part
    n_val_used = n_val.clamp(max=cfg.val_samples)
    v_max = int(n_val_used.max())
    v_rows = torch.arange(v_max)
    v_valid = (v_rows.unsqueeze(0) < n_val_used.unsqueeze(1)).to(device)
    v_index = (n_test.unsqueeze(1) + v_rows.clamp(max=v_max - 1).unsqueeze(0)).clamp(max=n_max - 1).to(device)
    x_val = x_all.gather(1, v_index.unsqueeze(-1).expand(-1, -1, dx))
    y_val = y_all.gather(1, v_index.unsqueeze(-1).expand(-1, -1, dy))

    fit_start = fit_start.to(torch.float32)
    fit_len = n_fit.to(device, torch.float32)
    batch = min(cfg.batch_size, int(n_fit.min()))
    full_batch = torch.ones(m, batch, dtype=torch.bool, device=device)
    saved = critics.snapshot()
    with torch.no_grad():  # step 0: with the Gaussian base, the critic to beat is the Gaussian one
        best = torch.nan_to_num(_bound(critics.scores(x_val, y_val), v_valid, cfg), nan=-torch.inf)
    best_step = torch.zeros(m, dtype=torch.long, device=device)
    waited = torch.zeros(m, dtype=torch.long, device=device)
    for step in range(1, cfg.max_steps + 1):
        u = torch.rand(m, batch, generator=gen).to(device)
        rows = (fit_start.unsqueeze(1) + (u * fit_len.unsqueeze(1)).floor()).long()
        xb = x_all.gather(1, rows.unsqueeze(-1).expand(-1, -1, dx))
        yb = y_all.gather(1, rows.unsqueeze(-1).expand(-1, -1, dy))
        scores = critics.scores(xb, yb)
        objective = _bound(scores, full_batch, cfg) if cfg.objective == "infonce" else _js_objective(scores)
        loss = -objective.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            with torch.no_grad():
                value = _bound(critics.scores(x_val, y_val), v_valid, cfg)
            value = torch.nan_to_num(value, nan=-torch.inf)
            improved = value > best + cfg.min_delta
            critics.keep(saved, improved)
            best = torch.where(improved, value, best)
            best_step = torch.where(improved, step, best_step)
            waited = torch.where(improved, 0, waited + 1)
            if bool((waited >= cfg.patience).all()):
                break
    critics.restore(saved)
    with torch.no_grad():
        estimate, base = _test_estimates(critics, x_all, y_all, n_test, cfg, gen)
    cpu = [v.cpu().double() for v in (estimate, base, best)]
    return CriticRun(*cpu, best_step.cpu(), n_test)


def _test_estimates(
    critics: _Critics, x_all: Tensor, y_all: Tensor, n_test: Tensor, cfg: CriticConfig, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The bound on each model's whole test part, for the critic and for its Gaussian base alone (NaN
    without one). All pairs, except for the concat critic, which scores every test x against its own y
    and ``negatives`` random other test y, in chunks."""
    m, device = x_all.shape[0], x_all.device
    t_max = int(n_test.max())
    valid = (torch.arange(t_max).unsqueeze(0) < n_test.unsqueeze(1)).to(device)
    x_t, y_t = x_all[:, :t_max], y_all[:, :t_max]
    nan = torch.full((m,), math.nan, device=device)
    if cfg.critic != "concat":
        full = _bound(critics.scores(x_t, y_t), valid, cfg)
        base = nan if critics.base is None else _bound(critics.base.scores(x_t, y_t), valid, cfg)
        return full, base
    full, base = nan.clone(), nan.clone()
    for i in range(m):
        t = int(n_test[i])
        k = min(cfg.negatives, t - 1)
        offsets = torch.randint(1, t, (t, k), generator=gen).to(device)
        rows = torch.arange(t, device=device).unsqueeze(1)
        cols = torch.cat([rows, (rows + offsets) % t], 1)  # [t, 1 + k]; column 0 is the paired sample
        model = [[p[i : i + 1] for p in group] for group in critics.groups]
        learned, gauss = [], []
        for start in range(0, t, 64):
            xr = x_t[i, rows[start : start + 64].expand(-1, 1 + k)]  # [r, 1 + k, dx]
            yc = y_t[i, cols[start : start + 64]]
            learned.append(_pair_scores(model, xr, yc))
            if critics.base is not None:
                gauss.append(critics.base.pair_scores(i, xr, yc))
        scores = torch.cat(learned)
        if critics.base is not None:
            base[i] = _sampled_bound(torch.cat(gauss), cfg)
            scores = scores + torch.cat(gauss)
        full[i] = _sampled_bound(scores, cfg)
    return full, base


def _sampled_bound(scores: Tensor, cfg: CriticConfig) -> Tensor:
    """The bound from [t, 1 + k] scores whose column 0 is each sample's paired score."""
    diag = scores[:, 0]
    if cfg.objective == "infonce":
        return math.log(scores.shape[1]) + (diag - scores.logsumexp(1)).mean()
    part = scores[:, 1:].clamp(-cfg.clip, cfg.clip)
    return diag.mean() - (part.flatten().logsumexp(0) - math.log(part.numel()))


def _pair_scores(groups: list[list[Tensor]], x: Tensor, y: Tensor) -> Tensor:
    """Concat critic of one model on explicit pairs: x [r, c, dx], y [r, c, dy] -> [r, c]."""
    r, c, _ = x.shape
    pairs = torch.cat([x, y], -1).reshape(1, r * c, -1)
    (w, b), rest = groups
    hidden = torch.relu(torch.baddbmm(b, pairs, w))
    return _mlp(rest, hidden).reshape(r, c)
