"""The suite's shared fixtures (what the tests share besides fixtures is in ``tests/helpers.py``)."""

import os

import pytest

# With pytest-xdist (two workers on CI's two cores) each worker gets one math-library thread:
# two workers with two threads each oversubscribe the cores, and small convolutions then run
# many times slower. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def no_face_image():
    from skimage import data

    return data.coffee()


@pytest.fixture(scope="session")
def tiny_agan_model(tmp_path_factory):
    """A generator file pair with random weights at width 8 (the ``agan`` operator's weights in
    tests: no trained A-GAN weights exist offline)."""
    pytest.importorskip("torch")
    from anonlens.generative.agan.model import save_generator
    from anonlens.generative.agan.networks import AGAN_NETWORKS
    from anonlens.generative.agan.train import preset

    path = tmp_path_factory.mktemp("agan") / "tiny"
    save_generator({"G1": AGAN_NETWORKS.create("unet_256", ngf=8)}, path, config=preset("single-stage", ngf=8))
    return str(path)


@pytest.fixture
def operator_options(request):
    """Options an operator needs to be built in a test (the ``agan`` operator: its weights)."""

    def options(name):
        return {"model": request.getfixturevalue("tiny_agan_model")} if name == "agan" else {}

    return options
