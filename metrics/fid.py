"""FID and KID of a set of generated images against a reference set, with a pluggable feature network.

- FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule…", arXiv 1706.08500): the Fréchet
  distance between Gaussians fitted to the two sets' features.
- KID (Bińkowski et al., "Demystifying MMD GANs", arXiv 1801.01401): the unbiased MMD² with the cubic
  polynomial kernel, averaged over random subsets; reported with its standard deviation over subsets.

The maths is torchmetrics' (``FrechetInceptionDistance`` / ``KernelInceptionDistance``), fed with features
we extract ourselves, in float64 (torchmetrics' ``set_dtype(torch.float64)``). Features come from

- the standard FID InceptionV3 (``pt_inception-2015-12-05``, torch-fidelity's port of the TF weights
  that every published FID uses: a local file, the torch hub cache, or a download when allowed); or
- any ``nn.Module`` / callable mapping images ``(B, 3, H, W)`` in [0, 1] to ``(B, D)``; or
- the synthetic world's ``features()`` when a world is given and Inception was not asked for.

Reference set: an image folder (its features are computed once and saved, keyed by the folder's
content and the feature network), a statistics file (``.pt`` from this module, or ``.npz`` with
``mu``/``sigma`` as pytorch-fid and clean-fid write; KID needs features, which such files lack), or —
for the synthetic world — exact samples ``world.exact_samples(prompts, n, seed)``.

Small sets: the Fréchet distance of sample covariances is biased upward, strongly so when n is below
the feature dimension (2048 for Inception: the covariance is then singular) and noticeably below
about 10k images; the result carries a warning then. KID is unbiased and comes with its spread.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mgt_common.errors import ConfigError, MissingWeightsError

from ._openclip import to_uint8
from .base import ExactWorld, SetFeatures, SetMetric, SetMetricResult, register_metric
from .set_jackknife import fid_resampled, kid_resampled
from .weights import downloads_allowed, file_sha256, user_cache_dir

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: below this many images FID is noticeably biased (the field reports FID on 10k-50k images).
FID_RELIABLE_N = 10_000


# -- feature networks ---------------------------------------------------------------------------------
def resolve_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The FID Inception weights: ``path``, else the torch hub cache or ours, else a download when allowed."""
    if path:
        local = Path(path).expanduser()
        if not local.is_file():
            raise MissingWeightsError(f"fid: Inception weights file {local} does not exist; download {INCEPTION_URL}")
        return local
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE, user_cache_dir() / INCEPTION_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not downloads_allowed():
        raise MissingWeightsError(
            f"fid: the FID InceptionV3 weights ({INCEPTION_FILE}) are not in {candidates[0].parent} or {candidates[1].parent}, "
            f"and downloads are disabled (HF_HUB_OFFLINE / MGT_BENCH_OFFLINE). Download {INCEPTION_URL} into "
            f"{candidates[0].parent}, or pass `inception_weights = \"/path/{INCEPTION_FILE}\"`.")
    candidates[0].parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(candidates[0]), progress=False)
    except Exception as exc:
        raise MissingWeightsError(f"fid: could not download {INCEPTION_URL} ({type(exc).__name__}: {exc}); "
                                  f"put the file at {candidates[0]} or pass `inception_weights`") from None
    return candidates[0]


class InceptionFeatures(nn.Module):
    """2048-d pool features of the FID InceptionV3 (torch-fidelity / torchmetrics), for float images in [0, 1].

    Images are turned back into their exact bytes (rounding) before the network, which takes uint8 and
    resizes to 299 x 299 itself, as in every published FID.
    """

    def __init__(self, weights: str | os.PathLike | None = None, dims: int = 2048):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        if dims not in (64, 192, 768, 2048):  # the taps torch-fidelity exposes; 2048 is the standard FID
            raise ConfigError(f"fid: inception_dims {dims} is not one of 64, 192, 768, 2048")
        self.num_features = dims
        self.weights_path = resolve_inception_weights(weights)
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(dims)],
                                      feature_extractor_weights_path=str(self.weights_path))
        self.identity = f"inception-2015-12-05-{dims}:{file_sha256(self.weights_path)[:16]}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(to_uint8(images)).reshape(images.shape[0], -1)


class CallableFeatures(nn.Module):
    """Wraps a callable (e.g. the synthetic world's ``features``) as a feature network."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], identity: str):
        super().__init__()
        self.fn = fn
        self.identity = identity

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


def module_identity(module: nn.Module) -> str:
    """A stable id for a custom feature network: its class and a hash of its weights."""
    if hasattr(module, "identity"):
        return str(module.identity)
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{type(module).__name__}:{digest.hexdigest()[:16]}"


class _PassThrough(nn.Module):
    """Lets torchmetrics' metrics take features we computed (and cached) ourselves."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# -- reference statistics -----------------------------------------------------------------------------
@dataclass
class ReferenceStats:
    """A reference set's features (None when only mean/covariance are known), mean and covariance (float64)."""

    mean: torch.Tensor
    cov: torch.Tensor
    n: int
    features: torch.Tensor | None = None
    source: str = ""

    @classmethod
    def from_features(cls, features: torch.Tensor, source: str = "") -> "ReferenceStats":
        f = features.to(torch.float64)
        mean = f.mean(dim=0)
        centred = f - mean
        cov = centred.T @ centred / max(f.shape[0] - 1, 1)
        return cls(mean=mean, cov=cov, n=f.shape[0], features=features, source=source)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save({"mean": self.mean, "cov": self.cov, "n": self.n, "features": self.features, "source": self.source}, tmp)
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written statistics file

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReferenceStats":
        path = Path(path)
        if path.suffix == ".npz":
            data = np.load(path)
            if "mu" not in data or "sigma" not in data:
                raise ConfigError(f"fid: {path} has no 'mu'/'sigma' arrays (found {list(data)})")
            features = torch.from_numpy(data["features"]) if "features" in data else None
            # pytorch-fid / clean-fid files do not record n: 0 means "unknown" (only the mean and covariance are used)
            n = int(data["n"]) if "n" in data else (features.shape[0] if features is not None else 0)
            return cls(mean=torch.from_numpy(data["mu"]).double(), cov=torch.from_numpy(data["sigma"]).double(), n=n,
                       features=features, source=str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(mean=data["mean"].double(), cov=data["cov"].double(), n=int(data["n"]), features=data.get("features"),
                   source=data.get("source", str(path)))


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_key(folder: Path, extractor_id: str) -> str:
    """Content key of a reference folder: the sorted (relative path, file sha256) pairs and the feature network."""
    digest = hashlib.sha256(extractor_id.encode())
    for path in list_images(folder):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


_folder_digests: dict[tuple, str] = {}


def folder_sha256_memo(folder: Path) -> str:
    """`folder_key` of a reference folder without a feature network, remembered in this process while no
    file of it changed (name, inode, size, mtime, ctime): FID and KID of one run hash it once."""
    files = list_images(folder)
    identity = (str(folder.resolve()), tuple((str(p.relative_to(folder)), s.st_ino, s.st_size, s.st_mtime_ns,
                                              s.st_ctime_ns) for p, s in ((p, p.stat()) for p in files)))
    if identity not in _folder_digests:
        _folder_digests[identity] = folder_key(folder, "")
    return _folder_digests[identity]


# -- the metrics --------------------------------------------------------------------------------------
class _FeatureSetMetric(SetMetric):
    """Shared machinery of FID and KID: feature extraction (memoised per image content), reference sets.

    Params: ``feature`` ("auto": the world's features when a world is given, else Inception;
    "inception"; "world"; or an ``nn.Module``/callable), ``inception_weights`` (local file),
    ``reference`` (image folder, ``.pt``/``.npz`` statistics), ``reference_cache`` (folder for computed
    reference statistics; default the user cache), ``reference_per_prompt`` and ``reference_seed``
    (world exact samples), ``inception_dims`` (2048, the standard; 64/192/768 for quick checks),
    ``batch_size``, ``device``.
    """

    _memo: dict[tuple[str, str], torch.Tensor] = {}
    _MEMO_LIMIT = 50_000

    def __init__(self, feature: Any = "auto", inception_weights: str | None = None, reference: str | None = None,
                 reference_cache: str | None = None, reference_per_prompt: int = 1, reference_seed: int = 0,
                 batch_size: int = 32, inception_dims: int = 2048, **params: Any):
        super().__init__(**params)
        self.feature = feature
        self.inception_weights = inception_weights
        self.reference = reference
        self.reference_cache = Path(reference_cache).expanduser() if reference_cache else user_cache_dir() / "fid-reference"
        self.reference_per_prompt = int(reference_per_prompt)
        self.reference_seed = int(reference_seed)
        self.batch_size = int(batch_size)
        self.inception_dims = int(inception_dims)
        for key, value, least in (("reference_per_prompt", self.reference_per_prompt, 1), ("batch_size", self.batch_size, 1),
                                  ("reference_seed", self.reference_seed, 0)):
            if value < least:  # at config time: a bad value must not surface after generation and scoring
                raise ConfigError(f"{self.name or 'fid'}: {key} must be >= {least}, got {value}")
        self.params.update(inception_dims=self.inception_dims, feature=feature if isinstance(feature, str) else module_identity(feature) if isinstance(feature, nn.Module)
                           else getattr(feature, "__qualname__", "callable"),
                           reference=reference, reference_per_prompt=self.reference_per_prompt, reference_seed=self.reference_seed)
        self._inception: InceptionFeatures | None = None
        self._world_reference: dict[tuple, ReferenceStats] = {}
        #: whether "auto" means the world's features (known once `check_weights` saw the world, or not)
        self._world_given: bool | None = None
        self._content: dict[str, str] | None = None

    def describe(self) -> dict[str, Any]:
        """The parameters, and the content they name: the reference set's bytes and the feature network's
        weights (`content`), so that a journalled value is reused only for the same reference and network,
        as per-image scores are keyed by their weights (`PerImageMetric.cache_id`)."""
        described = super().describe()
        content = self.content()
        if content:
            described["content"] = content
        return described

    def content(self) -> dict[str, str]:
        """sha256 of the reference (a statistics file, or every image of a folder with its relative name) and
        of the Inception weights when they are used; hashed once per metric object (`file_sha256` memoises
        each file by inode, size, mtime and ctime across runs)."""
        if self._content is None:
            content = {}
            if self.reference:
                path = Path(self.reference).expanduser()
                if path.is_file():
                    content["reference_sha256"] = file_sha256(path)
                elif path.is_dir():
                    content["reference_sha256"] = folder_sha256_memo(path)
            if self.feature == "inception" or (self.feature == "auto" and self._world_given is False):
                content["feature_weights_sha256"] = file_sha256(resolve_inception_weights(self.inception_weights))
            self._content = content
        return self._content

    def check_weights(self, world: ExactWorld | None = None) -> None:
        """Find what `compute` will need (Inception weights, the reference set) before any image is generated."""
        self._world_given = world is not None
        self._content = None
        if self.reference:
            path = Path(self.reference).expanduser()
            if not (path.is_file() or path.is_dir()):
                raise ConfigError(f"{self.name}: reference {path} is neither an image folder nor a statistics file")
        elif world is None:
            raise ConfigError(f"{self.name}: no reference set: give `reference` (an image folder or a .pt/.npz statistics file)")
        if self.feature == "inception" or (self.feature == "auto" and world is None):
            resolve_inception_weights(self.inception_weights)

    def unload(self) -> None:
        """Free the Inception network (the harness frees each metric before the next one loads)."""
        self._inception = None
        self._world_reference.clear()

    # feature network -----------------------------------------------------------------------------
    def extractor(self, world: ExactWorld | None) -> nn.Module:
        feature = self.feature
        if isinstance(feature, nn.Module):
            return feature
        if callable(feature):
            return CallableFeatures(feature, getattr(feature, "__qualname__", "callable"))
        if feature == "world" or (feature == "auto" and world is not None):
            if world is None:
                raise ConfigError(f"{self.name}: feature='world' needs the synthetic world model")
            return CallableFeatures(world.features, f"world:{type(world).__name__}:{id(world)}")
        if feature in ("auto", "inception"):
            if self._inception is None:
                self._inception = InceptionFeatures(self.inception_weights, self.inception_dims).to(self.device)
            return self._inception
        raise ConfigError(f"{self.name}: feature {feature!r}: use 'auto', 'inception', 'world' or a module")

    def features(self, images: torch.Tensor | Iterable[torch.Tensor], prompts: Sequence[str],
                 world: ExactWorld | None = None, prompt_ids: Sequence[str] | None = None) -> SetFeatures:
        """The feature network's row per image (see `extract`), with the prompts the reference depends on."""
        return SetFeatures(self.extract(images, self.extractor(world)), tuple(prompts),
                           None if prompt_ids is None else tuple(prompt_ids), world)

    def reference_of(self, features: SetFeatures) -> ReferenceStats:
        """The reference set's statistics for these features (the same feature network; see `reference_stats`)."""
        return self.reference_stats(features.prompts, features.world, self.extractor(features.world))

    @torch.no_grad()
    def extract(self, images: torch.Tensor | Iterable[torch.Tensor], extractor: nn.Module) -> torch.Tensor:
        """Features ``(N, D)`` float32 of images (a tensor, or an iterable of batches).

        Features of networks with weights are memoised by image content (FID and KID on the same network
        then extract once between them); plain callables such as the world's cheap ``features`` are not,
        since nothing identifies them across objects.
        """
        ident = module_identity(extractor)
        memoise = not isinstance(extractor, CallableFeatures)
        batches = [images] if isinstance(images, torch.Tensor) else images
        out: list[torch.Tensor] = []
        for batch in batches:
            for start in range(0, batch.shape[0], self.batch_size):
                chunk = batch[start:start + self.batch_size]
                if not memoise:
                    out.append(extractor(chunk.to(self.device)).detach().float().cpu())
                    continue
                keys = [(ident, hashlib.sha256(img.float().contiguous().numpy().tobytes()).hexdigest()) for img in chunk.cpu()]
                todo = [i for i, k in enumerate(keys) if k not in self._memo]
                if todo:
                    feats = extractor(chunk[todo].to(self.device)).detach().float().cpu()
                    if len(self._memo) + len(todo) > self._MEMO_LIMIT:
                        self._memo.clear()
                    for i, f in zip(todo, feats):
                        self._memo[keys[i]] = f
                out.append(torch.stack([self._memo[k] for k in keys]))
        if not out:
            raise ValueError(f"{self.name}: no images")
        return torch.cat(out)

    # reference set -------------------------------------------------------------------------------
    def reference_stats(self, prompts: Sequence[str], world: ExactWorld | None, extractor: nn.Module) -> ReferenceStats:
        if self.reference:
            path = Path(self.reference).expanduser()
            if path.is_file():
                return ReferenceStats.load(path)
            if path.is_dir():
                return self._folder_stats(path, extractor)
            raise ConfigError(f"{self.name}: reference {path} is neither an image folder nor a statistics file")
        if world is None:
            raise ConfigError(f"{self.name}: no reference set: give `reference` (an image folder or a .pt/.npz statistics file)")
        key = (tuple(prompts), self.reference_per_prompt, self.reference_seed, module_identity(extractor))
        if key not in self._world_reference:
            samples = world.exact_samples(list(prompts), self.reference_per_prompt, self.reference_seed)
            self._world_reference[key] = ReferenceStats.from_features(self.extract(samples, extractor),
                                                                      source=f"world exact samples (seed {self.reference_seed})")
        return self._world_reference[key]

    def _folder_stats(self, folder: Path, extractor: nn.Module) -> ReferenceStats:
        files = list_images(folder)
        if not files:
            raise ConfigError(f"{self.name}: reference folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        key = folder_key(folder, module_identity(extractor))
        cached = self.reference_cache / f"{key[:32]}.pt"
        if cached.is_file():
            return ReferenceStats.load(cached)
        from .score_cache import read_image

        def batches():
            for start in range(0, len(files), self.batch_size):
                images = [read_image(p) for p in files[start:start + self.batch_size]]
                shapes = {tuple(i.shape) for i in images}
                if len(shapes) == 1:
                    yield torch.stack(images)
                else:  # mixed sizes: one at a time (the feature network resizes itself)
                    yield from (i.unsqueeze(0) for i in images)

        stats = ReferenceStats.from_features(self.extract(batches(), extractor), source=str(folder))
        stats.save(cached)
        return stats

    @staticmethod
    def size_warnings(name: str, n_fake: int, n_real: int, dim: int) -> list[str]:
        warnings = []
        n = min(n_fake, n_real)
        if n < dim:
            warnings.append(f"{name}: only {n} images for {dim}-d features: the covariance is singular and FID is "
                            "dominated by small-sample bias; compare only equal-sized sets, or rely on KID")
        elif n < (FID_RELIABLE_N if dim >= 2048 else 10 * dim):
            # 10k is the field's floor for Inception FID; for small custom features, ten samples per dimension
            warnings.append(f"{name}: {n} images: FID is biased upward at this size; compare only equal-sized sets")
        return warnings


@register_metric("fid")
class FID(_FeatureSetMetric):
    """Fréchet Inception Distance (Heusel et al. 2017), float64, torchmetrics' formula; lower is better."""

    higher_is_better = False
    version = "fid-1"
    lower_bound = 0.0  # a squared distance between Gaussians

    def compute_from_features(self, features: SetFeatures) -> Mapping[str, SetMetricResult]:
        result = fid_from_features(features.features, self.reference_of(features), self.device)
        result.details["feature_trace"] = feature_trace(features.features)
        return {"fid": result}

    def resampled(self, features: SetFeatures, weights: np.ndarray) -> Mapping[str, np.ndarray]:
        reference = self.reference_of(features)
        return {"fid": fid_resampled(features.features.double().numpy(), reference.mean.double().numpy(),
                                     reference.cov.double().numpy(), weights)}


@register_metric("kid")
class KID(_FeatureSetMetric):
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std over subsets; lower is better.

    Extra params: ``subsets`` (100), ``subset_size`` (1000, reduced to the smaller set's size), ``seed``.
    """

    higher_is_better = False
    version = "kid-1"
    unbiased = True  # the unbiased MMD² estimator: no size-dependent bias to correct in a difference

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **params: Any):
        super().__init__(**params)
        self.subsets, self.subset_size, self.seed = int(subsets), int(subset_size), int(seed)
        if self.subsets < 1 or self.subset_size < 2 or self.seed < 0:
            raise ConfigError(f"kid: subsets must be >= 1, subset_size >= 2 and seed >= 0, got {subsets}, {subset_size}, {seed}")
        self.params.update(subsets=self.subsets, subset_size=self.subset_size, seed=self.seed)

    def compute_from_features(self, features: SetFeatures) -> Mapping[str, SetMetricResult]:
        reference = self.reference_of(features)
        if reference.features is None:
            return {"kid": SetMetricResult(value=float("nan"), n=len(features), warnings=[
                f"kid: the reference statistics {reference.source} hold no features (mean/covariance only); "
                "KID needs the reference images or a .pt statistics file written by this suite"])}
        result = kid_from_features(features.features, reference.features, self.subsets, self.subset_size, self.seed)
        result.details["feature_trace"] = feature_trace(features.features)
        return {"kid": result}

    def resampled(self, features: SetFeatures, weights: np.ndarray) -> Mapping[str, np.ndarray]:
        reference = self.reference_of(features)
        if reference.features is None:  # no interval for a value that cannot be computed
            return {}
        return {"kid": kid_resampled(features.features.double().numpy(), reference.features.double().numpy(), weights)}


# -- functional twins ---------------------------------------------------------------------------------
def feature_trace(features: torch.Tensor) -> float:
    """tr Σ̂ of a set's features (unbiased covariance): its spread, which FID's small-sample bias grows with.

    bench/set_intervals.py compares it across variants: where two sets' traces differ, so do their
    FID biases, and the plain difference of their FIDs is off (docs/report.md, "Set metrics").
    """
    f = features.to(torch.float64)
    if f.shape[0] < 2:
        return float("nan")
    return float(((f - f.mean(dim=0)) ** 2).sum() / (f.shape[0] - 1))


def fid_from_features(fake: torch.Tensor, reference: ReferenceStats, device: torch.device | str = "cpu") -> SetMetricResult:
    """FID of features ``fake`` ``(N, D)`` against reference statistics, via torchmetrics in float64.

    Cost: torchmetrics takes the eigenvalues of a non-symmetric D x D product; for D = 2048 that is about
    40 s on 2 CPU cores (a GPU ``device`` is much faster).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    n_fake, dim = fake.shape
    warnings = _FeatureSetMetric.size_warnings("fid", n_fake, reference.n or n_fake, dim)
    if reference.mean.shape[0] != dim:
        raise ConfigError(f"fid: reference statistics have {reference.mean.shape[0]}-d features, the generated set {dim}-d "
                          f"(different feature networks?)")
    if n_fake < 2 or reference.n == 1:
        return SetMetricResult(value=float("nan"), n=n_fake, warnings=warnings + ["fid: needs at least 2 images per set"])
    metric = FrechetInceptionDistance(feature=_PassThrough(dim), normalize=False).set_dtype(torch.float64).to(device)
    # torchmetrics keeps sums; rebuild them from the reference mean/covariance (exact for any n >= 2; an
    # unknown n, as in pytorch-fid files, is replaced by a nominal one that cancels out)
    n_ref = reference.n if reference.n >= 2 else 50_000
    mean = reference.mean.to(device, torch.float64)
    metric.real_features_sum = mean * n_ref
    metric.real_features_cov_sum = reference.cov.to(device, torch.float64) * (n_ref - 1) + n_ref * torch.outer(mean, mean)
    metric.real_features_num_samples = torch.tensor(n_ref, device=device)
    metric.update(fake.to(device, torch.float64), real=False)
    return SetMetricResult(value=float(metric.compute()), n=n_fake, warnings=warnings)


def kid_from_features(fake: torch.Tensor, real: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> SetMetricResult:
    """KID mean ± std over ``subsets`` random subsets, via torchmetrics in float64 (seeded: reproducible)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    warnings = []
    size = min(subset_size, fake.shape[0], real.shape[0])
    if size < subset_size:
        warnings.append(f"kid: subsets of {size} images (fewer than the requested {subset_size}); its std reflects that")
    if size < 2:
        return SetMetricResult(value=float("nan"), n=fake.shape[0], warnings=warnings + ["kid: needs at least 2 images per set"])
    import warnings as _warnings

    with _warnings.catch_warnings():  # its "features are kept in memory" notice: we hold them anyway
        _warnings.simplefilter("ignore")
        metric = KernelInceptionDistance(feature=_PassThrough(fake.shape[1]), subsets=subsets, subset_size=size,
                                         normalize=False).set_dtype(torch.float64)
    metric.update(real.to(torch.float64), real=True)
    metric.update(fake.to(torch.float64), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return SetMetricResult(value=float(mean), std=float(std), n=fake.shape[0], warnings=warnings)
