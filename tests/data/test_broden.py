"""The Broden loader on a tiny fixture written in its format, its errors, and the synthetic concept set."""

import numpy as np
import pytest
from PIL import Image

from advtf.data.broden import load_broden
from advtf.data.concepts import COLOURS, SHAPES, synthetic_concepts, synthetic_labels
from advtf.errors import UserError

HEADER = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
LABELS = [  # number, name, category (dominant first)
    (1, "red-c", "color(3)"), (2, "blue-c", "color(2)"), (3, "wall", "object(2);part(1)"),
    (4, "door", "part(2)"), (5, "window", "part(1)"), (300, "sky", "object(1)"),
    (7, "street", "scene(2)"), (8, "striped", "texture(1)"), (9, "dotted", "texture(2)"), (10, "wood", "material(0)"),
]


def _png(path, labels):
    """A segmentation PNG: label = R + 256 G."""
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    rgb[..., 2] = 77  # unused by the format
    Image.fromarray(rgb).save(path)


def write_broden(root, seed=0):
    """A 4-image Broden directory (224x224 JPEGs, 112x112 PNGs); returns the label maps written per image."""
    rng = np.random.default_rng(seed)
    (root / "images" / "src").mkdir(parents=True)
    truth = []
    rows = []
    for i in range(4):
        name = f"src/img{i}"
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), np.uint8)).save(root / "images" / f"{name}.jpg",
                                                                              quality=95)
        color = rng.choice([0, 1, 2], (112, 112)).astype(np.int32)
        _png(root / "images" / f"{name}_color.png", color)
        obj = np.zeros((112, 112), np.int32)
        obj[10:40, 20:70] = 300  # needs the G channel
        obj[60:90, 5:30] = 3
        parts = [np.zeros((112, 112), np.int32), np.zeros((112, 112), np.int32)]
        parts[0][0:56] = 4
        parts[1][50:70, 50:70] = 5
        item = {"color": [color], "object": [], "part": [], "scene": [], "texture": []}
        fields = {"color": f"{name}_color.png", "object": "", "part": "", "material": "", "scene": "", "texture": ""}
        if i != 1:  # image 1 has no object labels at all
            _png(root / "images" / f"{name}_object.png", obj)
            fields["object"] = f"{name}_object.png"
            item["object"] = [obj]
        if i in (0, 2):  # multi-plane parts
            for k, p in enumerate(parts, 1):
                _png(root / "images" / f"{name}_part_{k}.png", p)
            fields["part"] = f"{name}_part_1.png;{name}_part_2.png"
            item["part"] = parts
        if i == 0:
            fields["texture"], item["texture"] = "8;9", [8, 9]
            fields["scene"], item["scene"] = "7", [7]
        if i == 3:
            fields["texture"], item["texture"] = "9", [9]
        truth.append(item)
        split = "val" if i == 3 else "train"
        rows.append(",".join([f"{name}.jpg", split, "224", "224", "112", "112", fields["color"], fields["object"],
                              fields["part"], fields["material"], fields["scene"], fields["texture"]]))
    (root / "index.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    label_lines = ["number,name,category,frequency,coverage,syns", "0,-,,0,0,"]
    label_lines += [f'{n},{name},"{cat}",1,1,' for n, name, cat in LABELS]
    (root / "label.csv").write_text("\n".join(label_lines) + "\n")
    (root / "category.csv").write_text("name,first,last,count,frequency\n" + "\n".join(
        f"{c},1,1,1,1" for c in ("color", "object", "part", "material", "scene", "texture")) + "\n")
    return truth


@pytest.fixture
def broden(tmp_path):
    root = tmp_path / "broden1_224"
    root.mkdir()
    return root, write_broden(root)


def test_loader_decodes_labels_planes_and_image_labels(broden):
    root, truth = broden
    concepts = load_broden(root.parent)  # finds broden1_224/ inside
    assert concepts.size == 4 and concepts.image_shape == (224, 224, 3) and concepts.seg_shape == (112, 112)
    assert concepts.categories == ("color", "object", "part", "material", "scene", "texture")
    table = dict(zip(concepts.label_numbers.tolist(), zip(concepts.label_names, concepts.label_categories)))
    assert table[3] == ("wall", "object") and table[300] == ("sky", "object") and 0 not in table
    batches = list(concepts.batches(3))
    assert [len(b["image"]) for b in batches] == [3, 1]
    images = np.concatenate([b["image"] for b in batches])
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    for b, start in zip(batches, (0, 3)):
        for j in range(len(b["image"])):
            item = truth[start + j]
            planes = [p for p in b["pixel_labels"][j] if p.any()]
            expected = item["color"] + item["object"] + item["part"]
            assert len(planes) == len(expected)
            for got, want in zip(planes, expected):
                np.testing.assert_array_equal(got, want)  # R + 256 G, multi-plane parts in order
            assert sorted(x for x in b["image_labels"][j] if x) == sorted(item["scene"] + item["texture"])
            present = dict(zip(concepts.categories, b["present"][j]))
            assert present["color"] and not present["material"]
            assert present["object"] == bool(item["object"]) and present["part"] == bool(item["part"])
            assert present["texture"] == bool(item["texture"]) and present["scene"] == bool(item["scene"])
    assert 300 in batches[0]["pixel_labels"]
    later = next(concepts.batches(3, 2))  # from image 2 (a resumed pass)
    np.testing.assert_array_equal(later["image"], images[2:])


def test_loader_splits_and_limit(broden):
    root, _ = broden
    assert load_broden(root, split="val").size == 1
    assert load_broden(root, split="train").size == 3
    assert load_broden(root, split="train", limit=2).size == 2
    with pytest.raises(UserError, match="no images"):
        load_broden(root, split="test")


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "index.csv").unlink(), "no index.csv"),
    (lambda r: (r / "label.csv").unlink(), "no label.csv"),
    (lambda r: (r / "images").rename(r / "pictures"), "no images/"),
    (lambda r: (r / "index.csv").write_text("image,split,ih\nsrc/img0.jpg,train,224\n"), "header"),
    (lambda r: (r / "label.csv").write_text("id,name\n1,x\n"), "header"),
    (lambda r: (r / "index.csv").write_text(HEADER + "\n../../../etc/passwd,train,224,224,112,112,,,,,,\n"),
     "leaves the Broden images/"),
    (lambda r: (r / "index.csv").write_text(HEADER + "\nsrc/img0.jpg,train,224,224,112,112,/etc/hosts,,,,,\n"),
     "leaves the Broden images/"),
    (lambda r: (r / "index.csv").write_text(HEADER + "\nsrc/img0.jpg,train,224,224,112,112,../x.png,,,,,\n"),
     "leaves the Broden images/"),
])
def test_loader_errors(broden, damage, words):
    root, _ = broden
    damage(root)
    with pytest.raises(UserError, match=words):
        load_broden(root)


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_broden(tmp_path / "nope")


def test_synthetic_set_is_deterministic_and_consistent():
    concepts = synthetic_concepts(20, (24, 24), seed=3)
    whole = next(concepts.batches(20))
    parts = list(concepts.batches(7))
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))  # batch-size free
    np.testing.assert_array_equal(next(concepts.batches(5, 13))["image"], whole["image"][13:18])
    other = next(synthetic_concepts(20, (24, 24), seed=4).batches(20))
    assert not np.array_equal(whole["image"], other["image"])
    numbers, names, categories = synthetic_labels()
    category = dict(zip(numbers.tolist(), categories))
    colour, obj, halves, border = (whole["pixel_labels"][:, k] for k in range(4))
    assert set(np.unique(colour).tolist()) <= set(range(1, len(COLOURS) + 1))
    assert all(category[n] == "object" for n in np.unique(obj) if n)
    np.testing.assert_array_equal(halves > 0, obj > 0)  # the two halves tile the shape
    assert not np.any((border > 0) & (obj == 0))  # the border lies inside the shape
    assert np.all(whole["present"][:, 0])
    textured = whole["image_labels"][:, 0] > 0
    np.testing.assert_array_equal(whole["present"][:, 3], textured)
    assert textured.any() and (~textured).any()
    for i in range(20):  # the shape is painted in one colour that is its colour label
        inside = obj[i] > 0
        assert inside.any() and len(np.unique(colour[i][inside])) == 1
        rgb = np.asarray(list(COLOURS.values()))[colour[i][inside][0] - 1]
        assert np.allclose(whole["image"][i][inside].mean(0), rgb, atol=0.02)
    assert len(names) == len(COLOURS) + len(SHAPES) + 3 + 5
