"""core/seeding.py: the named random streams stay the streams the stores were made with."""
import numpy as np

from body.detector import CropRequest
from core.seeding import rng_for, rng_for_text, stable_seed
from synthetic.detector import SyntheticDetector

# Values drawn before the streams moved into core/seeding.py (a change here changes the data).


def test_stable_seed_and_rng_for_are_unchanged():
    assert stable_seed(0, "example", 3) == 10193590522631016110
    assert rng_for(0, "example", 3).integers(0, 2 ** 31, 3).tolist() == [
        390615131, 1381053110, 1423852615]
    philox = np.random.Generator(np.random.Philox(key=stable_seed(1, "synthetic", 5)))
    assert philox.random(2).tolist() == [0.9043455514858215, 0.36657719725739113]


def test_the_simulated_detector_stream_is_unchanged():
    request = CropRequest("/x/data/synthetic/images/seq_0/00012.png", np.array([101.25, 88.0]), 1.4)
    rng = SyntheticDetector(seed=7).generator(request)
    assert rng.integers(0, 2 ** 31, 4).tolist() == [318408283, 734498886, 784682656, 1983763855]
    again = rng_for_text("7|synthetic/images/seq_0/00012.png|101.250|88.000|1.400000")
    assert again.random(2).tolist() == [0.3420276970482129, 0.9237620307517694]
