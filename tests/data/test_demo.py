import hashlib
import json

import numpy as np

from raysys.data.demo import generate, power_law_counts


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_layout_and_determinism(tmp_path):
    a = generate(tmp_path / "a", names=5, size=48, images=100, seed=3)
    b = generate(tmp_path / "b", names=5, size=48, images=100, seed=3)
    c = generate(tmp_path / "c", names=5, size=48, images=100, seed=4)
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent) != _digest(c.parent)
    files = sorted(a.glob("index_*.json"))
    assert len(files) == 5
    doc = json.loads(files[0].read_text())
    assert set(doc) >= {"good"}
    first = a / doc["good"][0]
    assert first.is_file() and first.parent.parent.name == "images"


def test_power_law_counts():
    counts = power_law_counts(12, 1200)
    assert sum(counts) == 1200
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 4 * counts[-1]


def test_production_profile_has_the_data_cards_shape_and_scales_down():
    """Full size: 500 names, 434,528 images, the top ten exactly, 153/283/437 names over
    1,000/500/200 images, and people enough per name for a person-disjoint split. Scaled to 20k
    (the scale benchmark's quick run): the same names and order, every name kept."""
    from raysys.data.demo import PRODUCTION_TOP10, production_profile

    names, counts, people = production_profile()
    assert len(names) == len(set(names)) == 500 and sum(counts) == 434_528
    assert list(zip(names[:10], counts[:10], strict=True)) == list(PRODUCTION_TOP10)
    c = np.array(counts)
    assert ((c > 1000).sum(), (c > 500).sum(), (c > 200).sum()) == (153, 283, 437)
    assert min(people) >= 2 and people[0] == 149  # alex: ~40 images per person
    small_names, small, _ = production_profile(20_000)
    assert small_names == names and sum(small) == 20_000 and min(small) >= 1
    assert small == sorted(small, reverse=True)


def test_production_profile_writes_the_layout(tmp_path):
    from raysys.data.demo import production_profile

    index = generate(tmp_path / "p", size=16, images=2_600, profile="production")
    names, counts, _ = production_profile(2_600)
    found = {f.name[6:-5]: len(json.loads(f.read_text())["good"])
             for f in index.glob("index_*.json")}
    assert found == dict(zip(names, counts, strict=True))
    alex = json.loads((index / "index_alex.json").read_text())["good"]
    assert len({p.split("/")[2] for p in alex}) >= 2  # several people
