"""FID / KID: float64 maths checked against independent formulas, Inception from a local file, reference caching."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from metrics.base import METRICS
from metrics.fid import FID, INCEPTION_FILE, KID, InceptionFeatures, ReferenceStats, fid_from_features, resolve_inception_weights
from mgt_common.errors import MissingWeightsError


class SmallFeatures(torch.nn.Module):
    """A small custom feature network: 4x4 average pooling, then a fixed random projection to 6-d."""

    num_features = 6

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(48, 6)
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def images(n, seed, scale=1.0, size=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), generator=g).float() / 255 * scale).round(decimals=6)


def independent_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def independent_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³ over the whole sets."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


class FakeWorld:
    """The two things FID needs from the synthetic world: its features and exact samples."""

    def __init__(self):
        self.net = SmallFeatures()
        self.sample_calls = []

    def features(self, x):
        return self.net(x)

    def exact_samples(self, prompts, n_per_prompt, seed):
        self.sample_calls.append((list(prompts), n_per_prompt, seed))
        return images(len(prompts) * n_per_prompt, 1000 + seed, scale=0.7)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MGT_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))


def test_fid_with_custom_network_matches_scipy(tmp_path):
    net = SmallFeatures()
    real, fake = images(60, 1), images(50, 2, scale=0.8)
    torch.save({"mean": None}, tmp_path / "unused.pt")
    fid = FID(feature=net, reference=None)
    ref = ReferenceStats.from_features(net(real).detach())
    result = fid_from_features(net(fake).detach(), ref)
    expected = independent_fid(net(fake).detach().double().numpy(), net(real).detach().double().numpy())
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.value > 1e-3
    assert fid_from_features(net(real).detach(), ref).value == pytest.approx(0, abs=1e-6)
    assert METRICS.get("fid") is FID and not FID.higher_is_better and fid.describe()["name"] == "fid"


def test_world_features_and_exact_reference():
    world = FakeWorld()
    fake = images(40, 3)
    prompts = [f"p{i % 4}" for i in range(40)]
    out = METRICS.get("fid")(reference_seed=7).compute(fake, prompts, world=world)["fid"]
    assert world.sample_calls == [(prompts, 1, 7)]
    reference = world.exact_samples(prompts, 1, 7)
    expected = independent_fid(world.features(fake).detach().double().numpy(), world.features(reference).detach().double().numpy())
    assert out.value == pytest.approx(expected, rel=1e-6)
    assert out.n == 40 and out.warnings  # 40 samples for 6-d features: flagged as small


def test_kid_matches_unbiased_mmd_and_reports_spread():
    world = FakeWorld()
    fake = images(30, 4)
    prompts = ["p"] * 30
    whole = KID(subsets=1, subset_size=30).compute(fake, prompts, world=world)["kid"]
    reference = world.exact_samples(prompts, 1, 0)
    expected = independent_kid(world.features(fake).detach().double().numpy(), world.features(reference).detach().double().numpy())
    assert whole.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    sub = KID(subsets=20, subset_size=10, seed=1).compute(fake, prompts, world=world)["kid"]
    again = KID(subsets=20, subset_size=10, seed=1).compute(fake, prompts, world=world)["kid"]
    assert sub.std is not None and sub.std > 0
    assert (sub.value, sub.std) == (again.value, again.std)  # seeded: reproducible
    small = KID(subsets=5).compute(fake, prompts, world=world)["kid"]  # 1000 requested, 30 available
    assert any("subsets of 30" in w for w in small.warnings)


def _write_folder(folder, n, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_reference_folder_statistics_are_cached_by_content(tmp_path):
    folder = tmp_path / "ref"
    _write_folder(folder, 24, 0)
    cache = tmp_path / "stats"
    net = SmallFeatures()
    fake = images(20, 5)
    first = FID(feature=net, reference=str(folder), reference_cache=str(cache)).compute(fake, ["p"] * 20)["fid"]
    assert len(list(cache.glob("*.pt"))) == 1
    counted = SmallFeatures()
    FID._memo.clear()
    second = FID(feature=counted, reference=str(folder), reference_cache=str(cache)).compute(fake, ["p"] * 20)["fid"]
    assert counted.calls == 20  # only the generated images: the folder's features came from the cache
    assert second.value == pytest.approx(first.value, rel=1e-12)
    kid = KID(feature=counted, reference=str(folder), reference_cache=str(cache), subset_size=10).compute(fake, ["p"] * 20)["kid"]
    assert np.isfinite(kid.value) and counted.calls == 20  # KID reuses the cached features too
    _write_folder(folder, 1, 99)  # change one image: a new key, recomputed
    FID(feature=counted, reference=str(folder), reference_cache=str(cache)).compute(fake, ["p"] * 20)
    assert len(list(cache.glob("*.pt"))) == 2


def test_npz_statistics_and_missing_features(tmp_path):
    net = SmallFeatures()
    real = net(images(40, 6)).detach().double().numpy()
    np.savez(tmp_path / "ref.npz", mu=real.mean(0), sigma=np.cov(real, rowvar=False))
    fake = images(30, 7)
    fid = FID(feature=net, reference=str(tmp_path / "ref.npz")).compute(fake, ["p"] * 30)["fid"]
    assert fid.value == pytest.approx(independent_fid(net(fake).detach().double().numpy(), real), rel=1e-6)
    kid = KID(feature=net, reference=str(tmp_path / "ref.npz")).compute(fake, ["p"] * 30)["kid"]
    assert np.isnan(kid.value) and "hold no features" in kid.warnings[0]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """The FID Inception architecture with random (Kaiming) weights, saved as torch-fidelity's file would be."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None), \
            mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for module in net.modules():  # larger than the default init, so that the features are not all ~0
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.05)
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def test_inception_from_local_file_matches_torchmetrics(inception_file):
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3

    real = (torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    fake = (torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1)) * 200).round().to(torch.uint8)
    # the standard 2048-d features, from float images, equal the stock extractor's on the uint8 images
    ours_2048 = InceptionFeatures(inception_file)(real[:2].float() / 255)
    stock_2048 = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                    feature_extractor_weights_path=str(inception_file))(real[:2])
    assert ours_2048.shape == (2, 2048) and ours_2048.std() > 1e-3
    torch.testing.assert_close(ours_2048, stock_2048.reshape(2, -1), atol=1e-5, rtol=1e-5)
    # The FID value itself on the 64-d tap (a 2048-d eigen-decomposition takes ~40 s on 2 cores; the maths
    # does not depend on the dimension): our cached-features path against torchmetrics fed with images.
    fid = FID(feature="inception", inception_weights=str(inception_file), inception_dims=64, batch_size=3)
    extractor = fid.extractor(None)
    ours = fid_from_features(fid.extract(fake.float() / 255, extractor),
                             ReferenceStats.from_features(fid.extract(real.float() / 255, extractor)))
    stock = FrechetInceptionDistance(feature=64, feature_extractor_weights_path=str(inception_file)).set_dtype(torch.float64)
    stock.update(real, real=True)
    stock.update(fake, real=False)
    assert ours.value == pytest.approx(float(stock.compute()), rel=1e-6)
    assert ours.value > 0
    assert any("singular" in w for w in ours.warnings)  # 3 images for 64-d features


def test_missing_inception_weights_offline(tmp_path):
    with pytest.raises(MissingWeightsError, match="weights-inception-2015-12-05.*inception_weights"):
        resolve_inception_weights()
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve_inception_weights(tmp_path / "nope.pth")
