"""The E/I-ratio classifier as a user runs it: a training stopped and resumed to the weights of an uninterrupted
one, `eilab predict` on a classifier directory (its windows' classes are those metrics.json counted), and runs
the classifier cannot take (another network, too short) or a model directory of another shape refused with
exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from ml_helpers import ei_ratio_config

from conftest import eilab, small_network
from eilab.sim.config import load_config
from eilab.sim.engine import run

torch = pytest.importorskip("torch")

FACTORS = [0.3, 3.0]


def write_config(folder: Path) -> Path:
    """A classifier over the small E/I network with its inhibitory weights scaled by 0.3 and 3 (400 ms runs)."""
    cfg = ei_ratio_config(folder, FACTORS, {"epochs": 5, "batch": 2, "lr": 1e-2, "patience": 5, "seed": 3},
                          runs_dir=str(folder / "runs"))
    path = folder / "ei.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory A: stopped after 2 epochs, then resumed; B: the same training uninterrupted."""
    folder = tmp_path_factory.mktemp("classify")
    config = write_config(folder)
    first = eilab("train", str(config), "--out", str(folder / "A"), "--max-epochs", "2", "--quiet")
    assert first.returncode == 0, first.stderr
    assert "stopped after epoch 2" in first.stderr and not (folder / "A" / "metrics.json").exists()
    for out in ("A", "B"):
        res = eilab("train", str(config), "--out", str(folder / out), "--quiet")
        assert res.returncode == 0, res.stderr
        assert "6 reused, 0 simulated" in res.stderr
    return folder


def test_a_resumed_classifier_ends_with_the_weights_of_an_uninterrupted_one(trained: Path) -> None:
    a = torch.load(trained / "A" / "model.pt", weights_only=True)
    b = torch.load(trained / "B" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    hist = [json.loads((trained / d / "metrics.json").read_text())["training"]["history"] for d in ("A", "B")]
    assert [e["val_loss"] for e in hist[0]] == [e["val_loss"] for e in hist[1]] and len(hist[0]) == 5


def test_predict_on_a_classifier_directory_gives_the_classes_metrics_counted(trained: Path) -> None:
    """The test runs' windows, predicted one run at a time, fill the test confusion matrices of metrics.json."""
    m = json.loads((trained / "A" / "metrics.json").read_text())["splits"]["test"]
    confusion = {name: np.zeros((2, 2), int) for name in ("cnn", "logistic")}
    for true, factor in enumerate(FACTORS):
        res = eilab("predict", str(trained / "A"), str(trained / "runs" / f"net-x{factor:g}-seed3"))
        assert res.returncode == 0, res.stderr
        assert "predicted factor of the inhibitory weights: CNN" in res.stdout
        p = json.loads((trained / "A" / "predictions" / f"net-x{factor:g}-seed3.json").read_text())
        assert p["windows"] == 3 and len(p["cnn"]["regressed"]) == 3
        for name in confusion:
            for f in p[name]["factors"]:
                confusion[name][true, FACTORS.index(f)] += 1
            assert p[name]["factor"] == FACTORS[int(np.argmax(p[name]["votes"]))]
    assert confusion["cnn"].tolist() == m["cnn"]["confusion"]
    assert confusion["logistic"].tolist() == m["logistic"]["confusion"]


def test_runs_a_classifier_cannot_take_exit_2(trained: Path, tmp_path: Path) -> None:
    net = small_network(t_ms=200.0)
    net["populations"][0]["n"] = 40
    cfg, raw = load_config(raw=net)
    run(cfg, raw, tmp_path / "other", progress=False)
    res = eilab("predict", str(trained / "A"), str(tmp_path / "other"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "populations E (E, 40), I (I, 20) do not match the model's E (E, 80), I (I, 20)" in res.stderr
    cfg, raw = load_config(raw=small_network(t_ms=150.0))
    run(cfg, raw, tmp_path / "short", progress=False)
    res = eilab("predict", str(trained / "A"), str(tmp_path / "short"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no window of 100.0 ms fits after 100.0 ms" in res.stderr
    assert not (trained / "A" / "predictions" / "short.json").exists()
    wrong = tmp_path / "wrong"  # a model directory whose weights are not of the shape its meta.json describes
    shutil.copytree(trained / "A", wrong)
    meta = json.loads((wrong / "meta.json").read_text())
    (wrong / "meta.json").write_text(json.dumps({**meta, "model": {**meta["model"], "channels": 8}}))
    res = eilab("predict", str(wrong), str(trained / "runs" / "net-x3-seed3"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "model.pt: not the weights meta.json describes" in res.stderr


def test_mcnemar_counts_the_discordant_windows_and_gives_the_exact_binomial_p() -> None:
    from scipy.stats import binomtest

    from eilab.ml.classify import mcnemar

    true = np.zeros(40, int)
    a = np.r_[np.zeros(30, int), np.ones(10, int)]  # right on 30
    b = np.r_[np.ones(12, int), np.zeros(28, int)]  # right on 28
    got = mcnemar(true, a, b)
    only_a, only_b = int(np.sum((a == 0) & (b != 0))), int(np.sum((a != 0) & (b == 0)))
    assert (got["only_first"], got["only_second"]) == (only_a, only_b) == (12, 10)
    assert got["p"] == pytest.approx(binomtest(10, 22, 0.5).pvalue, rel=1e-12)
    assert mcnemar(true, a, a)["p"] == 1.0


def test_the_cnn_sees_the_window_mean_through_its_head_and_former_directories_load_without() -> None:
    from eilab.ml.classify import make_cnn

    torch.manual_seed(0)
    x = torch.randn(3, 100, 2)
    net = make_cnn(5, {"channels": 4, "kernel": 3, "head_hidden": 8})
    logits, factor = net(x)
    assert logits.shape == (3, 5) and factor.shape == (3,)
    shifted, _ = net(x + torch.tensor([0.5, 0.0]))  # a higher mean E count changes the classes' logits
    assert not torch.allclose(shifted, logits)
    former = make_cnn(5, {"channels": 4, "kernel": 3})  # meta.json before head_hidden
    assert sorted(former.state_dict()) == ["body.0.bias", "body.0.weight", "body.2.bias", "body.2.weight",
                                           "classes.bias", "classes.weight", "factor.bias", "factor.weight"]
