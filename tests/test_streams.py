"""helpers.data.streams: the taxi-like default stream, label windows, and the NAB / CSV loaders
(tested on hand-written fixtures in data/fixtures/nab/ that follow NAB's file formats)."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from helpers.data import streams
from helpers.rcf import shingle

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures" / "nab"


# ----------------------------------------------------------------------------------------------
# The default stream
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_taxi_stream_is_reproducible_and_seed_dependent(seed):
    a, b = streams.taxi_stream(num_weeks=6, seed=seed), streams.taxi_stream(num_weeks=6, seed=seed)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.windows == b.windows and a.kinds == b.kinds
    assert not np.array_equal(a.values, streams.taxi_stream(num_weeks=6, seed=seed + 1).values)


@pytest.mark.parametrize("seed", [0, 3])
def test_taxi_stream_has_daily_and_weekly_seasonality(seed):
    st = streams.taxi_stream(num_weeks=8, seed=seed, num_anomalies=0)
    assert st.values.shape == (8 * 7 * 48,) and st.timestamps.shape == st.values.shape
    assert np.all(np.diff(st.timestamps).astype(int) == 1800), "half-hourly, like NAB's nyc_taxi"
    x = st.values - st.values.mean()

    def autocorrelation(lag):
        return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))

    assert autocorrelation(48) > 0.6 and autocorrelation(24) < 0, "a day repeats, half a day does not"
    days = st.values.reshape(-1, 48)
    weekday, weekend = days[np.arange(len(days)) % 7 < 5].mean(0), days[np.arange(len(days)) % 7 >= 5].mean(0)
    assert weekend[2] > 1.5 * weekday[2], "weekend small hours are busier"
    assert weekday[17] > 1.5 * weekend[17], "weekday mornings have the commute"
    assert np.all(st.values >= 0) and np.isfinite(st.values).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_anomalies_change_values_only_inside_their_windows(seed):
    clean = streams.taxi_stream(num_weeks=12, seed=seed, num_anomalies=0)
    st = streams.taxi_stream(num_weeks=12, seed=seed, num_anomalies=6)
    assert sorted(set(st.kinds)) == sorted(streams.ANOMALY_KINDS), "every kind appears"
    labels = streams.labels_from_windows(len(st.values), st.windows)
    np.testing.assert_array_equal(st.values[~labels], clean.values[~labels])
    for (start, stop), kind in zip(st.windows, st.kinds):
        changed = np.abs(st.values[start:stop] - clean.values[start:stop]) / clean.values[start:stop]
        assert changed.max() > 0.5, f"{kind} at {start} is a visible change"
    starts = [w[0] for w in st.windows]
    assert starts == sorted(starts) and all(a[1] <= b[0] for a, b in zip(st.windows, st.windows[1:]))
    assert starts[0] >= 14 * 48, "the first two weeks are normal (a stream's warm-up)"


def test_taxi_stream_rejects_impossible_settings():
    with pytest.raises(ValueError, match="num_weeks"):
        streams.taxi_stream(num_weeks=2)
    with pytest.raises(ValueError, match="num_anomalies"):
        streams.taxi_stream(num_weeks=4, num_anomalies=10)
    with pytest.raises(ValueError, match="noise"):
        streams.taxi_stream(noise=0.9)
    with pytest.raises(TypeError, match="seed"):
        streams.taxi_stream(seed=1.5)


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
def test_labels_from_windows_marks_half_open_ranges():
    labels = streams.labels_from_windows(10, [(1, 3), (7, 10)])
    assert np.flatnonzero(labels).tolist() == [1, 2, 7, 8, 9]
    assert not streams.labels_from_windows(4, []).any()
    with pytest.raises(ValueError, match="windows"):
        streams.labels_from_windows(5, [(3, 9)])
    with pytest.raises(ValueError, match="windows"):
        streams.labels_from_windows(5, [(3, 3)])


@pytest.mark.parametrize("size", [1, 3, 8])
def test_shingle_windows_mark_exactly_the_shingles_holding_an_anomalous_point(size):
    windows = [(0, 2), (10, 12), (25, 30)]
    labels = streams.labels_from_windows(30, windows)
    expected = shingle(labels.astype(float), size).any(axis=1)
    got = streams.labels_from_windows(30 - size + 1, streams.shingle_windows(windows, size, 30))
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------------------------
# NAB and CSV files
# ----------------------------------------------------------------------------------------------
def test_load_nab_reads_values_timestamps_and_label_windows():
    st = streams.load_nab(FIXTURES / "nyc_taxi.csv", FIXTURES / "combined_windows.json")
    assert st.values.shape == (96,) and st.values[0] == 4350
    assert st.timestamps[1] - st.timestamps[0] == np.timedelta64(30, "m")
    # NAB windows include both ends; the second runs past the file's end and is clipped
    assert st.windows == [(58, 64), (92, 96)]
    assert st.labelled and st.kinds == ["labelled", "labelled"] and st.points_per_day == 48


def test_load_nab_finds_the_labels_beside_the_file_or_in_nab_s_layout(tmp_path):
    beside = streams.load_nab(FIXTURES / "nyc_taxi.csv")
    assert beside.windows == [(58, 64), (92, 96)]
    (tmp_path / "data" / "realKnownCause").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    shutil.copy(FIXTURES / "nyc_taxi.csv", tmp_path / "data" / "realKnownCause" / "nyc_taxi.csv")
    shutil.copy(FIXTURES / "combined_windows.json", tmp_path / "labels" / "combined_windows.json")
    assert streams.load_nab(tmp_path / "data" / "realKnownCause" / "nyc_taxi.csv").windows == beside.windows
    lonely = tmp_path / "lonely.csv"
    shutil.copy(FIXTURES / "nyc_taxi.csv", lonely)
    unlabelled = streams.load_nab(lonely)
    assert not unlabelled.labelled and unlabelled.windows == []


def test_load_nab_explains_bad_label_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nyc_taxi.csv"):
        streams.load_nab(tmp_path / "missing.csv")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"realKnownCause/ec2.csv": []}))
    with pytest.raises(ValueError, match="no windows for nyc_taxi.csv"):
        streams.load_nab(FIXTURES / "nyc_taxi.csv", other)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        streams.load_nab(FIXTURES / "nyc_taxi.csv", broken)
    bad_time = tmp_path / "bad_time.json"
    bad_time.write_text(json.dumps({"nyc_taxi.csv": [["yesterday", "2014-07-01 03:00:00"]]}))
    with pytest.raises(ValueError, match="timestamp"):
        streams.load_nab(FIXTURES / "nyc_taxi.csv", bad_time)


def test_load_csv_reads_one_or_several_value_columns():
    one = streams.load_csv(FIXTURES / "sensors.csv", "temperature", "time")
    assert one.values.shape == (12,) and one.values[1] == 20.5 and not one.labelled
    assert one.timestamps[0] == np.datetime64("2021-03-01T10:00:00")
    both = streams.load_csv(FIXTURES / "sensors.csv", ["temperature", "pressure"], "time")
    assert both.values.shape == (12, 2) and both.values[-1].tolist() == [25.5, 1002.0]
    untimed = streams.load_csv(FIXTURES / "sensors.csv", "pressure", None)
    assert untimed.timestamps[3] - untimed.timestamps[0] == np.timedelta64(3, "s")
    # "auto": NAB's "timestamp" column when there is one, else the row number
    assert streams.load_csv(FIXTURES / "nyc_taxi.csv").timestamps[0] == np.datetime64("2014-07-01T00:00:00")
    np.testing.assert_array_equal(streams.load_csv(FIXTURES / "sensors.csv", "pressure").timestamps, untimed.timestamps)


def test_load_csv_explains_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"no column 'value'; the columns are \['time', 'temperature'"):
        streams.load_csv(FIXTURES / "sensors.csv", "value", "time")
    with pytest.raises(ValueError, match="no column 'stamp'"):
        streams.load_csv(FIXTURES / "sensors.csv", "pressure", "stamp")
    with pytest.raises(ValueError, match="line 2"):
        streams.load_csv(FIXTURES / "sensors.csv", "status", "time")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        streams.load_csv(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("timestamp,value\n")
    with pytest.raises(ValueError, match="no data rows"):
        streams.load_csv(header_only)
    backwards = tmp_path / "backwards.csv"
    backwards.write_text("timestamp,value\n2014-07-01 01:00:00,1\n2014-07-01 00:00:00,2\n")
    with pytest.raises(ValueError, match="increasing"):
        streams.load_csv(backwards)
    nan = tmp_path / "nan.csv"
    nan.write_text("timestamp,value\n2014-07-01 01:00:00,nan\n")
    with pytest.raises(ValueError, match="non-finite"):
        streams.load_csv(nan)
    with pytest.raises(FileNotFoundError, match="data_path"):
        streams.load_csv(tmp_path / "nowhere.csv")


def test_fetch_nab_offline_says_what_to_download_and_where(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(streams.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as err:
        streams.fetch_nab("nyc_taxi", tmp_path)
    message = str(err.value)
    assert "realKnownCause/nyc_taxi.csv" in message and str(tmp_path / "nyc_taxi.csv") in message
    assert "labels/combined_windows.json" in message
    with pytest.raises(ValueError, match="name"):
        streams.fetch_nab("nyc_taxis", tmp_path)


def test_fetch_nab_downloads_once_and_then_reads_from_disk(tmp_path, monkeypatch):
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        source = FIXTURES / ("combined_windows.json" if url.endswith(".json") else "nyc_taxi.csv")
        return io.BytesIO(source.read_bytes())

    monkeypatch.setattr(streams.urllib.request, "urlopen", fake_urlopen)
    csv_path, labels_path = streams.fetch_nab("nyc_taxi", tmp_path)
    assert len(calls) == 2 and csv_path.read_bytes() == (FIXTURES / "nyc_taxi.csv").read_bytes()
    assert streams.load_nab(csv_path, labels_path).windows == [(58, 64), (92, 96)]
    streams.fetch_nab("nyc_taxi", tmp_path)
    assert len(calls) == 2, "files already on disk are not downloaded again"
