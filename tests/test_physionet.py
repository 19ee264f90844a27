"""PhysioNet 2012 loader: hand-made archives (including malformed lines), checksums, real set A."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from taynode.data import physionet as pn

V = {v: i for i, v in enumerate(pn.VARIABLES)}


def write_set(folder, name, records, outcomes=None):
    """Write set-<name>.tar.gz with ``{file stem: text}`` records, and Outcomes-<name>.txt."""
    with tarfile.open(folder / f"set-{name}.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo(f"set-{name}")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for stem, text in records.items():
            data = text.encode()
            info = tarfile.TarInfo(f"set-{name}/{stem}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    if outcomes is not None:
        rows = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
        rows += [f"{rid},10,3,7,-1,{death}" for rid, death in outcomes.items()]
        (folder / f"Outcomes-{name}.txt").write_text("\n".join(rows) + "\n")


def tiny_set_a(folder, monkeypatch):
    """Ten hand-made records as set A in ``folder`` (made if needed), their checksums registered so
    loaders that verify them accept the files; returns ``folder``."""
    folder.mkdir(exist_ok=True)
    records = {
        str(r): record(r, [f"0{r % 10}:00,HR,{60 + r % 7}", f"1{r % 10}:30,pH,7.{r % 10}", "30:00,Temp,37"])
        for r in range(3000, 3010)
    }
    write_set(folder, "a", records, {r: r % 2 for r in range(3000, 3010)})
    own = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("set-a.tar.gz", "Outcomes-a.txt")}
    monkeypatch.setattr(pn, "SHA256", pn.SHA256 | own)
    return folder


def record(rid, lines, age=60, gender=1, height=-1, icu=2, weight=80.0):
    head = ["Time,Parameter,Value", f"00:00,RecordID,{rid}", f"00:00,Age,{age}", f"00:00,Gender,{gender}",
            f"00:00,Height,{height}", f"00:00,ICUType,{icu}", f"00:00,Weight,{weight}"]  # fmt: skip
    return "\n".join(head + lines) + "\n"


CLEAN = record(
    1001,
    [
        "00:10,HR,80",
        "00:30,HR,90",  # 0.5 h rounds half to even -> bin 0: HR averaged to 85
        "00:30,Temp,36.6",
        "01:30,HR,100",  # 1.5 h -> bin 2
        "02:30,HR,110",  # 2.5 h -> bin 2 as well: (100 + 110) / 2
        "05:00,Weight,82.5",  # a later Weight is an observation, not the descriptor
        "48:00,GCS,15",  # the last bin
    ],
    height=-1,
)

MALFORMED = record(
    1002,
    [
        "00:20,HR,70",
        "1:5x,HR,71",  # bad time
        "03:75,HR,72",  # minutes >= 60
        "48:01,HR,73",  # after 48 h
        "04:00,Foo,1",  # unknown parameter
        "04:00,HR,abc",  # not a number
        "04:00,HR,nan",  # not finite
        "04:00,Temp,-17.8",  # negative
        "05:00,Age,61",  # descriptor after 00:00
        "06:00,HR",  # 2 fields
        "07:00,HR,75",
    ],
)


@pytest.fixture
def tiny(tmp_path):
    records = {
        "1001": CLEAN,
        "1002": MALFORMED,
        "1003": "HR,Time\n00:00,RecordID,1003\n",  # no header: dropped whole
        "1004": "Time,Parameter,Value\n00:10,HR,60\n",  # no RecordID: dropped whole
    }
    for rid in range(2000, 2008):  # more clean records for the split
        records[str(rid)] = record(rid, [f"0{rid % 10}:00,HR,{50 + rid % 10}", f"10:00,pH,7.{rid % 10}"])
    deaths = {1001: 1, 1002: 0} | {rid: rid % 2 for rid in range(2000, 2008)}
    write_set(tmp_path, "a", records, deaths)
    return tmp_path


def by_id(split, rid):
    for part in (split.train, split.test):
        hit = np.nonzero(part.record_ids == rid)[0]
        if len(hit):
            return part.subset(hit)
    raise KeyError(rid)


def test_hand_made_record_binned_hourly(tiny):
    s = pn.load(tiny, verify=False, normalize=False)
    r = by_id(s, 1001)
    assert r.values.shape == (1, 49, 37) and s.train.grid.tolist() == list(range(49))
    np.testing.assert_array_equal(r.times[0], np.arange(49.0))
    hr, temp, w, gcs = V["HR"], V["Temp"], V["Weight"], V["GCS"]
    assert r.values[0, 0, hr] == pytest.approx(85.0) and r.mask[0, 0, hr] == 1
    assert r.values[0, 0, temp] == pytest.approx(36.6)
    assert r.mask[0, 1, hr] == 0 and r.values[0, 1, hr] == 0
    assert r.values[0, 2, hr] == pytest.approx(105.0)
    assert r.values[0, 5, w] == pytest.approx(82.5) and r.mask[0, :, w].sum() == 1  # not the 00:00 weight
    assert r.values[0, 48, gcs] == 15 and r.mask[0].sum() == 5
    np.testing.assert_array_equal(r.static[0], [60, 1, np.nan, 2, 80.0])  # Height -1 -> missing
    assert r.death[0] == 1 and r.sets[0] == "a"


def test_unbinned_keeps_minutes(tiny):
    s = pn.load(tiny, verify=False, normalize=False, bin_hours=None)
    r = by_id(s, 1001)
    n = r.lengths[0]
    np.testing.assert_allclose(r.times[0, :n], np.array([10, 30, 90, 150, 300, 2880]) / 60)
    assert np.all(r.times[0, n:] == r.times[0, n - 1]) and r.mask[0, n:].sum() == 0
    assert r.values[0, 1, V["HR"]] == 90 and r.values[0, 1, V["Temp"]] == pytest.approx(36.6)
    assert r.grid is None


def test_malformed_lines_are_counted_and_dropped(tiny):
    s = pn.load(tiny, verify=False, normalize=False)
    d = s.summary.dropped_lines
    assert d == {
        "bad time": 2,
        "time after 48:00": 1,
        "unknown parameter": 1,
        "value not a finite number": 2,
        "negative value": 1,
        "descriptor repeated or after 00:00": 1,
        "not 3 fields": 1,
    }
    assert s.summary.dropped_records == {"no 'Time,Parameter,Value' header": 1, "no RecordID": 1}
    assert s.summary.records == 10 and len(s.train) + len(s.test) == 10
    r = by_id(s, 1002)
    # only 00:20 HR=70 and 07:00 HR=75 survive
    assert r.mask[0].sum() == 2 and r.values[0, 0, V["HR"]] == 70 and r.values[0, 7, V["HR"]] == 75
    assert r.mask[0, :, V["Temp"]].sum() == 0 and r.static[0, 0] == 60
    assert "set-a/1002.txt" in s.summary.report() and "negative value" in s.summary.report()
    assert s.summary.examples["negative value"][0][2] == "04:00,Temp,-17.8"


def test_split_and_normalization_use_training_values_only(tiny):
    a = pn.load(tiny, verify=False, seed=3)
    b = pn.load(tiny, verify=False, seed=3)
    assert len(a.train) == 8 and len(a.test) == 2
    assert not set(a.train.record_ids) & set(a.test.record_ids)
    np.testing.assert_array_equal(a.test.record_ids, b.test.record_ids)
    assert any(set(pn.load(tiny, verify=False, seed=k).test.record_ids) != set(a.test.record_ids) for k in (4, 5, 6))
    raw = pn.load(tiny, verify=False, seed=3, normalize=False)
    obs = raw.train.mask > 0
    for j in (V["HR"], V["pH"]):
        x = raw.train.values[..., j][obs[..., j]]
        assert a.vmin[j] == x.min() and a.vmax[j] == x.max()
        y = a.train.values[..., j][obs[..., j]]
        assert y.min() == 0 and y.max() == pytest.approx(1)
    np.testing.assert_allclose(a.denormalize(a.test.values) * a.test.mask, raw.test.values, atol=1e-12)
    assert np.all(a.test.values[a.test.mask == 0] == 0)


def test_bad_arguments_and_missing_files(tiny, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="bin_hours"):
        pn.load(tiny, verify=False, bin_hours=0)
    with pytest.raises(ValueError, match="sets"):
        pn.load(tiny, verify=False, sets=("c",))
    with pytest.raises(FileNotFoundError, match="set-b.tar.gz"):
        pn.load(tiny, verify=False, sets=("b",))
    monkeypatch.setenv(pn.ENV_VAR, str(tiny))
    assert len(pn.load(verify=False).train) == 8  # the folder from the environment
    (tiny / "Outcomes-a.txt").write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1001,1,1,1,1,1\n")
    with pytest.raises(ValueError, match="no outcome for 9 records"):
        pn.load(tiny, verify=False)
    assert np.all(pn.load(tiny, verify=False, outcomes=False).train.death == -1)


def test_checksum_mismatch_names_the_file(tiny):
    with pytest.raises(ValueError, match=r"set-a\.tar\.gz: SHA-256 is [0-9a-f]{64}, expected"):
        pn.load(tiny)  # the hand-made archive is not the official one
    good = hashlib.sha256((tiny / "set-a.tar.gz").read_bytes()).hexdigest()
    pn.verify_sha256(tiny / "set-a.tar.gz", good)
    (tiny / "set-a.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable tar"):
        pn.load(tiny, verify=False)


def real_root():
    try:
        root = pn.find_root()
    except pn.DataError:
        return None
    return root if (root / "set-a.tar.gz").is_file() else None


@pytest.mark.skipif(real_root() is None, reason="the official PhysioNet 2012 files are not in ../shared/data/physionet2012")
def test_real_set_a_counts():
    s = pn.load(real_root(), sets=("a",))  # checksums verified
    n = len(s.train) + len(s.test)
    assert n == 4000 and len(s.test) == 800
    assert int((s.train.death == 1).sum() + (s.test.death == 1).sum()) == 554
    assert s.summary.lines == 1_757_980  # the data-line count of the published set A
    # every line is a kept observation, one of the 6 descriptors of each record, or counted as dropped
    assert s.summary.observations + 6 * 4000 + sum(s.summary.dropped_lines.values()) == s.summary.lines
    assert s.summary.dropped_lines == {"negative value": 24}  # Temp = -17.8 / -12.5 °C
    assert s.summary.dropped_records == {}
    ages = np.concatenate([s.train.static[:, 0], s.test.static[:, 0]])
    assert np.all((ages >= 15) & (ages <= 90))
    assert s.train.values.shape == (3200, 49, 37)
    assert s.train.values[s.train.mask > 0].min() == 0 and s.train.values[s.train.mask > 0].max() == 1
