import hashlib
import json

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
